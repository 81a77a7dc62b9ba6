"""One prompt, several answers: merge concurrent candidate requests into one llama-server request.

Sampled candidates are the same chat request sent N times at once, differing only in `seed`
(consecutive: the attempt's seed plus the candidate's number). Sent apart, llama-server processes
the same prompt in N slots, N times. Asked once with `n = N`, it processes the prompt once,
copies it to N-1 child slots and seeds child j with `seed + j` (llama.cpp's `server_task::add_child`),
so the N answers are exactly those of the N separate requests, for one prompt's work.

This transport sits under pydantic-ai's OpenAI client for local servers, so relay keeps sending
one request per candidate (metering, budgets, retries and errors stay per request): requests for
the same path whose bodies are equal except for the seed, and that arrive within `window_s` of
each other, are sent as one request with `n`, and each caller gets its own choice back as a
single-choice response. Usage: the server reports the prompt once and only the first answer's
tokens, so the first caller gets the server's numbers and every other caller gets the prompt as
cached tokens and its answer's length as the server's tokenizer counts it (`/tokenize`).

Anything else (streaming, a request already asking for `n`, no seed, a body that is not JSON)
passes through untouched.

A caller that gives up (cancelled: Ctrl-C, a budget, a deadline) withdraws its answer: one cancelled
before its group is sent is left out of it, and a request in flight whose callers have all given up
is cancelled, so the server is not kept busy with answers nobody will read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx2

__all__ = ["CoalescingTransport"]

_CHAT_PATH = "/chat/completions"


@dataclass
class _Member:
    seed: int
    body: dict[str, Any]
    request: httpx2.Request
    answer: asyncio.Future[httpx2.Response]
    run: list[_Member] = field(default_factory=list)
    """The members sent with it as one request (itself included), once its group is sent."""
    sender: asyncio.Task[None] | None = None
    """The task sending that request, once its group is sent."""


@dataclass
class _Group:
    members: list[_Member] = field(default_factory=list)


class CoalescingTransport(httpx2.AsyncBaseTransport):
    """Merge concurrent same-prompt chat requests with consecutive seeds into one `n`-request."""

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None, *, max_n: int = 4,
                 window_s: float = 0.05) -> None:
        self._inner = inner or httpx2.AsyncHTTPTransport()
        self._max_n = max(1, max_n)
        self._window_s = window_s
        self._open: dict[tuple[str, str], _Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = _mergeable_body(request)
        if body is None or self._max_n < 2:
            return await self._inner.handle_async_request(request)
        seed = int(body.pop("seed"))
        key = (str(request.url), json.dumps(body, sort_keys=True))
        member = _Member(seed, body, request, asyncio.get_running_loop().create_future())
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Group()
            # The group is sent by a task of its own, so a caller cancelled while waiting (another
            # candidate's failure cancels the rest) does not take the others' answers with it.
            task = asyncio.create_task(self._send_later(key, group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        group.members.append(member)
        try:
            return await asyncio.shield(member.answer)
        except asyncio.CancelledError:
            _withdraw(member)
            raise

    async def _send_later(self, key: tuple[str, str], group: _Group) -> None:
        await asyncio.sleep(self._window_s)
        if self._open.get(key) is group:
            del self._open[key]
        waiting = [m for m in group.members if not m.answer.done()]  # the others' callers gave up
        runs = _consecutive_runs(sorted(waiting, key=lambda m: m.seed), self._max_n)
        senders = []
        for run in runs:
            sender = asyncio.create_task(self._send_run(run))
            for member in run:
                member.run, member.sender = run, sender
            senders.append(sender)
        # Each run's outcome reaches its members through their futures; a run cancelled because all
        # its callers gave up is not the other runs' failure.
        await asyncio.gather(*senders, return_exceptions=True)

    async def _send_run(self, run: list[_Member]) -> None:
        try:
            if len(run) == 1:
                member = run[0]
                response = await self._inner.handle_async_request(_rebuild(member.request, member.body, member.seed))
                await response.aread()
                _resolve(member, _copy(response, response.content))
                return
            first = run[0]
            merged = _rebuild(first.request, {**first.body, "n": len(run)}, first.seed)
            response = await self._inner.handle_async_request(merged)
            content = await response.aread()
            data = _json_or_none(content) if response.status_code == 200 else None
            choices = data.get("choices") if isinstance(data, dict) else None
            if data is None or not isinstance(choices, list) or len(choices) != len(run):
                # An error (or an answer of another shape) is every member's answer.
                for member in run:
                    _resolve(member, _copy(response, content))
                return
            by_index = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
            counts = await self._answer_tokens(first.request, by_index[1:])
            usage = data.get("usage") or {}
            prompt = int(usage.get("prompt_tokens") or 0)
            for i, (member, choice) in enumerate(zip(run, by_index, strict=True)):
                single = {**data, "choices": [{**choice, "index": 0}]}
                if i > 0:
                    completion = counts[i - 1]
                    single["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                       "total_tokens": prompt + completion,
                                       "prompt_tokens_details": {"cached_tokens": prompt}}
                    single.pop("timings", None)
                _resolve(member, _copy(response, json.dumps(single).encode()))
        except BaseException as exc:  # the transport's failure is every waiting member's failure
            for member in run:
                if not member.answer.done():
                    member.answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    async def _answer_tokens(self, like: httpx2.Request, choices: list[Any]) -> list[int]:
        """Each answer's length in the server's tokens (the merged response reports only the first's)."""
        counts = []
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            text = message.get("content") if isinstance(message, dict) else None
            counts.append(await self._count_tokens(like, text if isinstance(text, str) else ""))
        return counts

    async def _count_tokens(self, like: httpx2.Request, text: str) -> int:
        if not text:
            return 0
        url = like.url.copy_with(path=like.url.path.rsplit("/v1/", 1)[0] + "/tokenize", query=None)
        request = httpx2.Request("POST", url, json={"content": text}, headers={"Content-Type": "application/json"},
                                extensions=like.extensions)
        with contextlib.suppress(httpx2.HTTPError, ValueError):
            response = await self._inner.handle_async_request(request)
            data = _json_or_none(await response.aread())
            if response.status_code == 200 and isinstance(data, dict) and isinstance(data.get("tokens"), list):
                return len(data["tokens"])
        return max(1, len(text) // 4)  # the server could not say: an estimate rather than nothing


def _mergeable_body(request: httpx2.Request) -> dict[str, Any] | None:
    if request.method != "POST" or not request.url.path.endswith(_CHAT_PATH):
        return None
    data = _json_or_none(request.content)
    if not isinstance(data, dict) or data.get("stream") or data.get("n", 1) != 1:
        return None
    seed = data.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return None
    data.pop("n", None)
    return data


def _consecutive_runs(members: list[_Member], max_n: int) -> list[list[_Member]]:
    """Members split where seeds are not consecutive (llama-server seeds child j with seed + j)."""
    runs: list[list[_Member]] = []
    for member in members:
        last = runs[-1] if runs else None
        if last is not None and len(last) < max_n and member.seed == last[-1].seed + 1:
            last.append(member)
        else:
            runs.append([member])
    return runs


def _rebuild(request: httpx2.Request, body: dict[str, Any], seed: int) -> httpx2.Request:
    content = json.dumps({**body, "seed": seed}).encode()
    headers = httpx2.Headers(request.headers)
    headers["Content-Length"] = str(len(content))
    return httpx2.Request(request.method, request.url, headers=headers, content=content,
                         extensions=request.extensions)


def _copy(response: httpx2.Response, content: bytes) -> httpx2.Response:
    headers = httpx2.Headers(response.headers)
    headers["Content-Length"] = str(len(content))
    headers.pop("Content-Encoding", None)
    return httpx2.Response(response.status_code, headers=headers, content=content, extensions=response.extensions)


def _withdraw(member: _Member) -> None:
    """`member`'s caller gave up: drop its answer, and cancel its request if nobody else waits for it."""
    member.answer.cancel()
    if member.sender is not None and all(m.answer.done() for m in member.run):
        member.sender.cancel()


def _resolve(member: _Member, response: httpx2.Response) -> None:
    if not member.answer.done():
        member.answer.set_result(response)


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
