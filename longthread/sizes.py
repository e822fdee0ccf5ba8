"""How large a message or a batch may be, and the errors that say so.

One call to the durable stack carries one Temporal payload, capped at 2 MB: `append_many`,
`import`, `restore_ledger` and the framework adapters all weigh messages here, so each refuses at
the same limit and names the field the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from memory.errors import InvalidInputError
from memory.models import Message

__all__ = ["MAX_BATCH_BYTES", "MessageTooLarge", "check_message_sizes", "content_over_limit",
           "largest_field", "message_bytes", "split_by_size", "too_large", "weighed"]

# Temporal caps one payload at 2 MB; a batch stays well below so JSON overhead never crosses it.
MAX_BATCH_BYTES = 1_500_000


def content_over_limit(raw: object) -> int | None:
    """A message's content bytes, before it is parsed, when they alone are over what one call
    carries. Parsing first refused content over 2 MB at library mode's limit (2,000,000) where
    1.6 MB was refused at the durable stack's (1,500,000): one limit, named the same way."""
    content = raw.get("content") if isinstance(raw, Mapping) else getattr(raw, "content", None)
    if not isinstance(content, str) or len(content) <= MAX_BATCH_BYTES // 4:
        return None  # UTF-8 takes at most 4 bytes a character
    size = len(content.encode("utf-8", "surrogatepass"))
    return size if size > MAX_BATCH_BYTES else None


def weighed(part: str, size: int, content_only: bool = False) -> str:
    """What a refusal of a message too large for one call says it weighed: its content alone
    (measured before parsing, `content_over_limit`) or the whole message as sent."""
    return f"its {part} alone is {size} bytes" if content_only else \
        f"the message is {size} bytes as sent"


def too_large(part: str, size: int, limit: int, *, content_only: bool = False) -> str:
    return (f"{part}: {weighed(part, size, content_only)}; the limit for one message is {limit} "
            "bytes (Temporal caps a payload at 2 MB): split it, or store the body elsewhere and "
            "import a reference")


def message_bytes(message: Message) -> int:
    """A message's size as an append call sends it (its JSON), which Temporal's payload cap
    bounds: `append_many`, `import` and the framework adapters all measure it so."""
    return len(message.model_dump_json().encode("utf-8"))


def largest_field(message: Message) -> str:
    """The field that makes a message too large, for the error that names it."""
    return max(("content", "metadata", "tool_calls"), key=lambda f: len(
        message.model_dump_json(include={f}).encode("utf-8")))


def split_by_size(weights: Sequence[int], count: int, limit: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) batches of at most `count` items and `limit` total weight (an
    item heavier than `limit` alone goes alone), in order."""
    bounds: list[tuple[int, int]] = []
    start, size = 0, 0
    for n, weight in enumerate(weights):
        if n > start and (n - start >= count or size + weight > limit):
            bounds.append((start, n))
            start, size = n, 0
        size += weight
    if weights:
        bounds.append((start, len(weights)))
    return bounds


class MessageTooLarge(InvalidInputError):
    """A message no call could carry; `index` and `part` (its largest field) let an adapter
    name it by its own item."""

    def __init__(self, field: str, index: int, part: str, size: int,
                 content_only: bool = False) -> None:
        self.index = index
        self.part = part
        super().__init__(
            f"{field}[{index}].{part}", f"{weighed(part, size, content_only)}; the "
            f"durable stack takes at most {MAX_BATCH_BYTES} bytes in one call (Temporal caps "
            "a payload at 2 MB), so one message cannot be larger: split it, or store the "
            "body elsewhere and append a reference")


def check_message_sizes(messages: Sequence[Message], sizes: Sequence[int],
                        field: str = "messages") -> None:
    """Refuse a message no call could carry, named (`field[i]`) whatever else the batch
    holds: no split helps it. The adapters check a whole turn so before sending any of it."""
    over = next((n for n, weight in enumerate(sizes) if weight > MAX_BATCH_BYTES), None)
    if over is not None:
        raise MessageTooLarge(field, over, largest_field(messages[over]), sizes[over])
