"""The compaction engine: pure, deterministic, sandbox-safe (apart from `memory.session`)."""

from memory.assembly import assemble_context
from memory.compaction import CompactionPlan, WindowState, apply_record, plan_compaction
from memory.errors import BudgetTooSmallError, InvalidInputError, LongthreadError, NotFoundError
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    ContextMessage,
    ContextWindow,
    Message,
    ScoredMessage,
    Summary,
    ToolCall,
)
from memory.policy import CompactionDecision, CompactionPolicy
from memory.session import Session
from memory.tokens import HeuristicCounter, ScriptCounter, TokenCounter

__all__ = [
    "BudgetTooSmallError",
    "CompactionDecision",
    "CompactionEvent",
    "CompactionPlan",
    "CompactionPolicy",
    "CompactionRecord",
    "ContextMessage",
    "ContextWindow",
    "HeuristicCounter",
    "InvalidInputError",
    "LongthreadError",
    "Message",
    "NotFoundError",
    "ScoredMessage",
    "ScriptCounter",
    "Session",
    "Summary",
    "TokenCounter",
    "ToolCall",
    "WindowState",
    "apply_record",
    "assemble_context",
    "plan_compaction",
]
