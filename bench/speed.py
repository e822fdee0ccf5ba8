"""Speed of the local embedder and of the extractive pass, before and after, in one run.

- Embedding throughput: 2,000 LoCoMo turns in batches of 64 (the EMBED activity's batch), by
  the float32 ONNX MiniLM in sorted batches of 16 (`bench.embedders.BaselineOnnx`, the
  default before int8 compute) and the int8-compute ONNX MiniLM, one text per run
  (`OnnxMiniLMEmbedder`, after); the torch MiniLM's numbers are in earlier RESULTS sections.
  Rounds alternate between the two so both see the same noise; the median round counts. CPU
  time per sentence is shown too: on this shared 2-core machine
  it says more than wall time when other work is running.
- Query embedding: LoCoMo questions, one at a time through the async `embed([q])` that
  context() uses, alternating between the two; p50 and p95.
- Extractive compaction: `extractive_summary` alone (no archiving, no store) over the first
  200, 1,000 and 10,000 LoCoMo turns at the default policy's summary budget. "Before" is the
  quadratic implementation, kept below as `_baseline_extractive_summary` for this comparison
  only (it is too slow to run at 10,000).

`python -m bench.speed` prints the section; `bench/run.py` puts it in RESULTS.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from activities.conversation import ConversationActivities
from activities.providers.embedders import Embedder, OnnxMiniLMEmbedder
from activities.types import EmbedInput
from bench.common import Section, bench_store, load_locomo, locomo_turns, machine
from bench.embedders import BATCH as EMBED_BATCH
from bench.embedders import BaselineOnnx
from bench.embedders import speed as embedding_speed
from memory.compaction import WindowState, compose_record, plan_compaction
from memory.extractive import Extract, ExtractiveSummary, extractive_summary, render_extracts
from memory.facts import fact_bonus
from memory.models import Message, Summary
from memory.policy import CompactionPolicy
from memory.summarizer import ExtractiveSummarizer
from memory.text import cosine, sentences, terms, tfidf_vectors
from memory.tokens import TokenCounter, default_counter

__all__ = ["run"]

EMBED_TEXTS = int(os.environ.get("LT_SPEED_EMBED_TEXTS", "2000"))
EMBED_ROUNDS = int(os.environ.get("LT_SPEED_EMBED_ROUNDS", "3"))
QUERIES = int(os.environ.get("LT_SPEED_QUERIES", "200"))
EXTRACT_SIZES = (200, 1000, 10000)
INGEST_TEXTS = int(os.environ.get("LT_SPEED_INGEST_TEXTS", "1000"))
INGEST_BATCH = 50  # appends of 50, as the latency bench's ingestion
BASELINE_MAX = 1000  # the quadratic baseline takes minutes beyond this
_REDUNDANT = 0.8


def _baseline_extractive_summary(
    messages: Sequence[Message],
    max_tokens: int,
    focus: str | None = None,
    counter: TokenCounter | None = None,
) -> ExtractiveSummary:
    """BASELINE FOR COMPARISON ONLY: `extractive_summary` as it was before issue 12 (commit
    0c4a8ef), quadratic in the number of sentences. Not used by the product."""
    counter = counter or default_counter()
    candidates: list[Extract] = []
    for message in messages:
        if message.role == "system":
            continue
        speaker = message.name or message.role
        for sentence in sentences(message.content):
            if terms(sentence):
                candidates.append(
                    Extract(message_id=message.id, speaker=speaker, sentence=sentence))
    if not candidates:
        return ExtractiveSummary(extracts=(), text="", tokens=0)

    docs = [terms(c.sentence) for c in candidates]
    focus_terms = terms(focus) if focus else []
    vectors = tfidf_vectors([*docs, focus_terms] if focus_terms else docs)
    focus_vec = vectors.pop() if focus_terms else {}
    n = len(candidates)
    scores: list[float] = []
    for i, vec in enumerate(vectors):
        centrality = sum(cosine(vec, other) for j, other in enumerate(vectors) if j != i)
        centrality = centrality / (n - 1) if n > 1 else 1.0
        focus_score = 2.0 * cosine(vec, focus_vec) if focus_vec else 0.0
        substance = min(1.0, len(docs[i]) / 6)
        scores.append((centrality + focus_score) * substance
                      + fact_bonus(candidates[i].sentence))

    order = sorted(range(n), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    for i in order:
        if any(cosine(vectors[i], vectors[j]) > _REDUNDANT for j in chosen):
            continue
        trial = sorted([*chosen, i])
        if counter.count(render_extracts([candidates[k] for k in trial])) <= max_tokens:
            chosen = trial
    extracts = tuple(candidates[k] for k in chosen)
    text = render_extracts(extracts)
    return ExtractiveSummary(extracts=extracts, text=text, tokens=counter.count(text))


def _turns() -> tuple[list[Message], list[str]]:
    """Every LoCoMo turn as a message (ids made unique across conversations), and every
    question."""
    messages: list[Message] = []
    questions: list[str] = []
    for sample in load_locomo():
        for dia_id, speaker, text, _ in locomo_turns(sample):
            messages.append(Message(id=f"{sample['sample_id']}:{dia_id}", role="user",
                                    content=text, name=speaker))
        questions.extend(str(q["question"]) for q in sample["qa"])
    return messages, questions


def _dated_turns() -> list[Message]:
    """LoCoMo turns as the product stores them (created_at from the session date)."""
    from bench.quality_store import load_samples

    return [Message.model_validate({**m, "id": f"{s.sample_id}:{m['id']}"})
            for s in load_samples() for m in s.messages]


async def _embedding(texts: Sequence[str], questions: Sequence[str]) -> dict[str, Any]:
    embedders: dict[str, Embedder] = {"before": BaselineOnnx(), "after": OnnxMiniLMEmbedder()}
    await asyncio.to_thread(OnnxMiniLMEmbedder().model)
    stats, _ = await embedding_speed(embedders, texts, questions, passes=EMBED_ROUNDS)
    return stats


def _timed(fn: Callable[[], ExtractiveSummary], repeats: int) -> tuple[float, ExtractiveSummary]:
    """Median wall ms over `repeats` calls, and the (deterministic) result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1e3)
    assert result is not None
    return statistics.median(times), result


def _extractive(messages: Sequence[Message]) -> dict[int, dict[str, Any]]:
    policy = CompactionPolicy()
    budget = int(policy.context_window * policy.summary_fraction)
    out: dict[int, dict[str, Any]] = {}
    for size in EXTRACT_SIZES:
        span = messages[:size]
        extractive_summary(span[:50], budget)  # warm the regexes
        after_ms, after = _timed(partial(extractive_summary, span, budget), 5)
        row: dict[str, Any] = {"after_ms": after_ms, "budget": budget,
                               "lines": len(after.extracts)}
        if size <= BASELINE_MAX:
            before_ms, before = _timed(partial(_baseline_extractive_summary, span, budget),
                                       3 if size <= 200 else 1)
            row.update(before_ms=before_ms, same_output=before.text == after.text,
                       same_terms=_term_bags(before) == _term_bags(after))
        out[size] = row
    return out


async def _ingestion(messages: Sequence[Message]) -> dict[str, float]:
    """Messages per second from append to archived and indexed, in-process: the store's
    append (archive, dedup digest, inverted index) then the EMBED activity's own code
    (`ConversationActivities.embed_messages`, run by Temporal's ActivityEnvironment: the
    day-stamped text, the embedder, `set_embeddings`), a batch at a time, one after the other
    (the workflow overlaps them, so this is a floor), before and after interleaved by batch.
    Before: the float32 ONNX MiniLM (bench.embedders.BaselineOnnx); after: the int8-compute
    one (`OnnxMiniLMEmbedder`)."""
    from temporalio.testing import ActivityEnvironment

    embedders: dict[str, Embedder] = {"before": BaselineOnnx(), "after": OnnxMiniLMEmbedder()}
    spent = dict.fromkeys(embedders, 0.0)
    async with bench_store() as store:
        envs = {}
        for name, embedder in embedders.items():
            await embedder.embed([m.content for m in messages[:EMBED_BATCH]])  # warm up
            envs[name] = (ConversationActivities(store, embedder), ActivityEnvironment())
        # Batch by batch, before and after in alternating order, so both see the same noise.
        for turn, at in enumerate(range(0, len(messages), INGEST_BATCH)):
            batch = list(messages[at: at + INGEST_BATCH])
            for name in (list(embedders) if turn % 2 == 0 else list(embedders)[::-1]):
                acts, env = envs[name]
                session = f"ingest-{name}"
                started = time.perf_counter()
                await store.append_messages("bench", session, batch)
                await env.run(acts.embed_messages, EmbedInput(
                    tenant="bench", session=session, start=at, stop=at + len(batch)))
                spent[name] += time.perf_counter() - started
    return {name: len(messages) / seconds for name, seconds in spent.items()}


def _compaction(messages: Sequence[Message]) -> float:
    """Median ms of one compaction of a 200-message window (archiving excluded): plan, the
    extractive summary, compose_record (the record and the window it makes)."""
    policy = CompactionPolicy()
    state = WindowState(messages=tuple(messages[:200]))
    summarizer = ExtractiveSummarizer()

    def once() -> None:
        plan = plan_compaction(state, policy, force=True, preserve_recent=0)
        assert plan is not None
        covered = set(plan.covered_ids)
        result = summarizer.summarize([m for m in state.messages if m.id in covered],
                                      plan.summary_max_tokens)
        summary = Summary(id="s1", level=1, content=result.text, covers=plan.covered_ids,
                          quoted_ids=result.quoted_ids)
        compose_record(state, plan, record_id="c1", seq=0, summary=summary,
                       strategy="extractive")

    once()
    times = []
    for _ in range(7):
        started = time.perf_counter()
        once()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def _term_bags(summary: ExtractiveSummary) -> list[list[tuple[str, int]]]:
    """What the scoring sees of each chosen sentence: its terms and their counts."""
    return sorted(sorted(Counter(terms(e.sentence)).items()) for e in summary.extracts)


def _agreement(row: dict[str, Any]) -> str:
    if row["same_output"]:
        return "identical"
    if row["same_terms"]:
        return ("differs only in which of several sentences with the same terms is quoted "
                "(ties now go to the earliest)")
    return "different choices"


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


async def run() -> tuple[Section, dict[str, Any]]:
    messages, questions = _turns()
    texts = [m.content for m in messages[:EMBED_TEXTS]]
    load_before = os.getloadavg()[0]
    emb = await _embedding(texts, questions[:QUERIES])
    ext = await asyncio.to_thread(_extractive, messages)
    compact_ms = await asyncio.to_thread(_compaction, messages)
    ingest = await _ingestion(_dated_turns()[:INGEST_TEXTS])
    load_after = os.getloadavg()[0]
    b, a = emb["before"], emb["after"]
    rows = [
        ("embedding throughput, sentences/s", b["sent_per_s"], a["sent_per_s"], True),
        ("embedding CPU per sentence, ms", b["cpu_ms_per_sent"], a["cpu_ms_per_sent"], False),
        ("query embedding p50, ms", b["query_ms"]["p50"], a["query_ms"]["p50"], False),
        ("query embedding p95, ms", b["query_ms"]["p95"], a["query_ms"]["p95"], False),
    ]
    rows.insert(0, ("ingestion, append → archived, indexed and embedded, messages/s",
                    ingest["before"], ingest["after"], True))
    for size, row in ext.items():
        rows.append((f"extractive summary of {size:,} messages, ms", row.get("before_ms"),
                     row["after_ms"], False))
    rows.append(("compaction of 200 messages (plan + extractive + compose_record), ms",
                 None, compact_ms, False))
    lines = ["| measure | before | after | speed-up |", "|---|---|---|---|"]
    for label, old, new, higher_is_better in rows:
        if old is None:
            lines.append(f"| {label} | (not measured) | {_fmt(new)} | |")
            continue
        gain = new / old if higher_is_better else old / new
        lines.append(f"| {label} | {_fmt(old)} | {_fmt(new)} | {gain:.1f}× |")
    budget = ext[EXTRACT_SIZES[0]]["budget"]
    same = ", ".join(f"{size:,} messages: {_agreement(r)}"
                     for size, r in ext.items() if "before_ms" in r)
    markdown = "\n".join([
        f"Machine: {machine()}; load average {load_before:.1f} before, {load_after:.1f} after "
        "(other work shares these 2 cores, so wall times are noisy; CPU per sentence less so).",
        "",
        f"Before: all-MiniLM-L6-v2 as ONNX with float32 compute in sorted batches of 16 (the "
        f"default until now, `bench.embedders.BaselineOnnx`) and the quadratic extractive pass. "
        f"After: the same model with int8 MatMuls, one text per run, two runs side by side "
        f"(`OnnxMiniLMEmbedder`) and the linear extractive pass. Embedding: {len(texts):,} "
        f"LoCoMo turns in batches of {EMBED_BATCH}, median of {EMBED_ROUNDS} alternating rounds "
        f"(before {b['rounds']}, after {a['rounds']} sentences/s); queries: "
        f"{len(questions[:QUERIES])} LoCoMo questions one at a time, alternating. Extractive: "
        f"`extractive_summary` alone at the default policy's {budget:,}-token summary budget, "
        f"median of 5 runs after, 3 (200) or 1 (1,000) before. Ingestion: {INGEST_TEXTS:,} "
        f"LoCoMo turns appended {INGEST_BATCH} at a time to an embedded Postgres, each batch "
        "then embedded by the EMBED activity's code (its text stamped with the day), one after "
        "the other, before and after alternating batch by batch (the workflow overlaps the "
        "two, so this is a floor; the Temporal update's "
        "own cost is in the latency section). Compaction: median of 7, the store excluded.",
        "",
        *lines,
        "",
        f"Extractive output, before vs after: {same}.",
        "",
    ])
    data = {"embedding": emb, "extractive": ext, "load": (load_before, load_after),
            "ingestion": ingest, "compaction_200_ms": compact_ms}
    return Section("Speed: local embedding and the extractive pass", markdown), data


if __name__ == "__main__":
    section, _ = asyncio.run(run())
    print(f"### {section.title}\n\n{section.markdown}")
