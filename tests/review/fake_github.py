"""A fake GitHub REST API on 127.0.0.1 that records every request."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeGitHub:
    """Serves one pull request (metadata and diff) and accepts reviews on it."""

    def __init__(self, diff: str, *, owner: str = "octo", repo: str = "widgets", number: int = 7,
                 review_status: int = 200) -> None:
        self.diff = diff
        self.pr_path = f"/repos/{owner}/{repo}/pulls/{number}"
        self.review_status = review_status
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self, body: Any = None) -> None:
                fake.requests.append({"method": self.command, "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._record()
                if self.path != fake.pr_path:
                    self._send(404, b'{"message": "Not Found"}', "application/json")
                elif self.headers.get("Accept") == "application/vnd.github.v3.diff":
                    self._send(200, fake.diff.encode(), "text/plain; charset=utf-8")
                else:
                    meta = {"title": "Fix bitcount", "html_url": "https://example.test/pr/7",
                            "head": {"sha": "abc123", "ref": "fix"}, "base": {"ref": "main"}}
                    self._send(200, json.dumps(meta).encode(), "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                self._record(body)
                if self.path != f"{fake.pr_path}/reviews":
                    self._send(404, b'{"message": "Not Found"}', "application/json")
                elif fake.review_status != 200:
                    self._send(fake.review_status, b'{"message": "Unprocessable Entity"}', "application/json")
                else:
                    self._send(200, b'{"id": 1, "html_url": "https://example.test/pr/7#review-1"}',
                               "application/json")

        return Handler
