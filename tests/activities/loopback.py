"""A loopback HTTP server that speaks just enough of the Anthropic and OpenAI wire formats.

The hosted APIs cannot be reached from here, so the real SDKs are pointed at this server.
Tests queue the replies (status, headers, body) and read back every request it received.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Loopback", "anthropic_message", "loopback", "openai_chat", "openai_embeddings"]


def anthropic_message(text: str, model: str = "claude-test") -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 11, "output_tokens": 7}}


def openai_chat(text: str, model: str = "gpt-test") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


def openai_embeddings(vectors: list[list[float]]) -> dict[str, Any]:
    return {"object": "list", "model": "emb-test",
            "data": [{"object": "embedding", "index": i, "embedding": v}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}}


def _error(status: int) -> dict[str, Any]:
    return {"type": "error", "error": {"type": "api_error", "message": f"status {status}"}}


@dataclass
class Loopback:
    port: int = 0
    replies: deque[tuple[int, dict[str, str], dict[str, Any], float]] = field(
        default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply(self, body: dict[str, Any], status: int = 200,
              headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.replies.append((status, headers or {}, body, delay))

    def fail(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.reply(_error(status), status, headers)

    async def first_request(self, timeout: float = 60.0) -> None:
        """Wait until a request has arrived (a summary request is in flight), or fail."""
        async with asyncio.timeout(timeout):
            while not self.requests:
                await asyncio.sleep(0.05)


@contextmanager
def loopback() -> Iterator[Loopback]:
    state = Loopback()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            state.requests.append({"path": self.path,
                                   "headers": {k.lower(): v for k, v in self.headers.items()},
                                   "json": body})
            status, headers, reply, delay = (state.replies.popleft() if state.replies
                                             else (500, {}, _error(500), 0.0))
            if delay:
                time.sleep(delay)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
