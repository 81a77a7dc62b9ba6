"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with fault injection.

The code under test is relay's real client path (pydantic-ai's OpenAI model,
the openai SDK, httpx, sockets); only the far end is scripted. Queue replies
with `FakeOpenAI.push(...)`; when the queue is empty, `default` answers.

    with FakeOpenAI() as server:
        server.push(Reply.error(429, headers={"Retry-After": "0"}))
        server.push(Reply.text("hello", input_tokens=10, output_tokens=2))
        model = openai_compatible_model("fake", server.base_url, "k")
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

FaultKind = Literal["none", "status", "truncated", "hang", "drop", "bad_json_tool"]


@dataclass
class Reply:
    """One scripted answer of the server."""

    content: str | None = "ok"
    tool_calls: list[dict[str, Any]] | None = None
    input_tokens: int = 10
    output_tokens: int = 5
    cached_tokens: int = 0
    finish_reason: str = "stop"
    fault: FaultKind = "none"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    delay_s: float = 0.0

    @classmethod
    def text(cls, content: str, **kw: Any) -> Reply:
        return cls(content=content, **kw)

    @classmethod
    def json_output(cls, data: Any, **kw: Any) -> Reply:
        """Structured output as JSON text (what a `response_format` request gets back)."""
        return cls(content=json.dumps(data), **kw)

    @classmethod
    def tool_call(cls, name: str, arguments: dict[str, Any] | str, **kw: Any) -> Reply:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call = {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": args}}
        return cls(content=None, tool_calls=[call], finish_reason="tool_calls", **kw)

    @classmethod
    def error(cls, status: int, message: str = "error", *, code: str | None = None,
              headers: dict[str, str] | None = None) -> Reply:
        body = {"error": {"message": message, "type": "error", "code": code}}
        return cls(fault="status", status=status, body=body, headers=headers or {})

    @classmethod
    def truncated(cls) -> Reply:
        return cls(fault="truncated")

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        return cls(fault="hang", delay_s=seconds)

    @classmethod
    def drop(cls) -> Reply:
        """Close the connection without answering."""
        return cls(fault="drop")


class FakeOpenAI:
    """An OpenAI-compatible chat-completions server for tests. Thread-safe; records every request."""

    def __init__(self, default: Callable[[dict[str, Any]], Reply] | None = None, *,
                 wire: Literal["openai", "anthropic"] = "openai") -> None:
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.default = default or (lambda _req: Reply.text("ok"))
        self.wire = wire
        """`openai`: chat completions at /v1/chat/completions; `anthropic`: the Messages API at /v1/messages."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        # The Anthropic SDK appends /v1/messages itself; OpenAI clients take the /v1 prefix.
        root = f"http://127.0.0.1:{self.port}"
        return root if self.wire == "anthropic" else root + "/v1"

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._replies:
                return self._replies.popleft()
        return self.default(request)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # silence
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    request = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    request = {"_raw": raw.decode("utf-8", "replace")}
                with fake._lock:
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                reply = fake._next(request)
                if reply.fault == "hang":
                    time.sleep(reply.delay_s)
                    self.close_connection = True
                    return
                if reply.fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.fault == "status":
                    body_err = reply.body or {}
                    if fake.wire == "anthropic":
                        err = body_err.get("error", {})
                        body_err = {"type": "error", "error": {"type": err.get("code") or "api_error",
                                                               "message": err.get("message", "error")}}
                    self._send(reply.status, body_err, reply.headers)
                    return
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = anthropic_body(request, reply) if fake.wire == "anthropic" else completion_body(request, reply)
                if reply.fault == "truncated":
                    data = json.dumps(body).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self._send(200, body, reply.headers)

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def completion_body(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        },
    }


def anthropic_body(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """A Messages API response. Anthropic counts cached input apart from `input_tokens`."""
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "fake"),
        "content": [{"type": "text", "text": reply.content or ""}],
        "stop_reason": "end_turn" if reply.finish_reason == "stop" else "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation_input_tokens": 0,
        },
    }
