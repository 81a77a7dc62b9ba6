"""One local server computes at a time: requests to different llama-servers take turns.

Each llama-server relay starts spins all of the machine's cores while it computes. Two of them
computing at once on a small machine do not share the cores, they fight for them: on two cores,
two 1.5B/0.5B servers answering together ran at 0.3–1 token/s instead of 20–30 alone. So requests
to relay's local servers take turns per server: while one server has requests in flight, requests
to another wait; requests to the server whose turn it is go in at once (its parallel slots batch
them, which is where a server is efficient). Waiters are served in arrival order, and a request for
the current server that arrives while another server's request waits queues behind it, so no
server starves.

The gate is per event loop (one relay process may run several `asyncio.run`s) and covers one
process: two relay processes on one machine still compete (documented in docs/local-models.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2

__all__ = ["ServerTurns", "TurnTakingTransport", "turns_for_this_loop"]

#: The requests that make a server compute (and so take turns): chat completions.
_COMPUTE_PATH = "/chat/completions"


@dataclass
class _Waiter:
    server: str
    granted: asyncio.Future[None]


class ServerTurns:
    """Requests to one server at a time; requests to the same server together."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.active = 0
        self._queue: deque[_Waiter] = deque()

    @contextlib.asynccontextmanager
    async def turn(self, server: str) -> AsyncIterator[None]:
        await self._acquire(server)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, server: str) -> None:
        if self.holder is None or (self.holder == server and not self._queue):
            self.holder, self.active = server, self.active + 1
            return
        waiter = _Waiter(server, asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._release()  # granted, then cancelled before it could use its turn
            else:
                if waiter in self._queue:  # a release since the cancel may have dropped it already
                    self._queue.remove(waiter)
                self._grant()  # it may have been the one keeping others of the current server waiting
            raise

    def _release(self) -> None:
        self.active -= 1
        if self.active == 0:
            self.holder = None
        self._grant()

    def _grant(self) -> None:
        # A waiter cancelled since it queued has a cancelled future but runs its except-clause only on
        # its next step: it must not be granted (nor decide whose turn it is) in between.
        self._queue = deque(w for w in self._queue if not w.granted.cancelled())
        if self.holder is None and self._queue:
            self.holder = self._queue[0].server
        if self.holder is None:
            return
        if self.active and self._queue and self._queue[0].server != self.holder:
            return  # another server is next: the current one only finishes what it has
        # The server whose turn it is takes every request queued for it.
        for waiter in [w for w in self._queue if w.server == self.holder]:
            self._queue.remove(waiter)
            self.active += 1
            waiter.granted.set_result(None)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ServerTurns] = weakref.WeakKeyDictionary()


def turns_for_this_loop() -> ServerTurns:
    """The running loop's gate, shared by every local model of this process on that loop."""
    loop = asyncio.get_running_loop()
    turns = _BY_LOOP.get(loop)
    if turns is None:
        turns = _BY_LOOP[loop] = ServerTurns()
    return turns


class TurnTakingTransport(httpx2.AsyncBaseTransport):
    """Sends each request in its server's turn and reads the whole answer before giving the turn up."""

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None, *, turns: ServerTurns | None = None) -> None:
        self._inner = inner or httpx2.AsyncHTTPTransport()
        self._turns = turns

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not request.url.path.endswith(_COMPUTE_PATH):
            # Health checks and /tokenize (the coalescing transport counts merged answers' tokens) cost
            # the server nothing worth a turn; waiting for one would hold finished answers back.
            return await self._inner.handle_async_request(request)
        turns = self._turns or turns_for_this_loop()
        async with turns.turn(f"{request.url.host}:{request.url.port}"):
            response = await self._inner.handle_async_request(request)
            await response.aread()  # the server computes until its answer is complete
            return response
