"""Concurrent candidate requests become one llama-server request with `n` (relaycode/local/coalesce.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest

from relaycode.local.coalesce import CoalescingTransport

URL = "http://127.0.0.1:9/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "fix it"}], "temperature": 0.8}


class FakeServer:
    """llama-server's behaviour with `n`: answer j is what seed + j alone would give; usage is the first's."""

    def __init__(self, status: int = 200) -> None:
        self.chats: list[dict[str, Any]] = []
        self.tokenized: list[str] = []
        self.status = status

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if request.url.path == "/tokenize":
            self.tokenized.append(body["content"])
            return httpx2.Response(200, json={"tokens": list(range(len(body["content"].split())))})
        self.chats.append(body)
        if self.status != 200:
            return httpx2.Response(self.status, json={"error": {"message": "boom"}})
        n, seed = body.get("n", 1), body.get("seed")
        seed = seed if isinstance(seed, int) else 0
        choices = [{"index": j, "finish_reason": "stop", "message": {"role": "assistant",
                                                                      "content": f"answer for seed {seed + j} " * (j + 1)}}
                   for j in reversed(range(n))]  # the order in the array is not the order of the seeds
        return httpx2.Response(200, json={"choices": choices, "usage": {"prompt_tokens": 50, "completion_tokens": 4,
                                                                         "total_tokens": 54}})


async def send_all(transport: CoalescingTransport, bodies: list[dict[str, Any]]) -> list[httpx2.Response]:
    async with httpx2.AsyncClient(transport=transport) as client:
        return await asyncio.gather(*(client.post(URL, json=b) for b in bodies))


def run(server: FakeServer, bodies: list[dict[str, Any]], **kw: Any) -> list[httpx2.Response]:
    return asyncio.run(send_all(CoalescingTransport(httpx2.MockTransport(server), **kw), bodies))


def content(response: httpx2.Response) -> str:
    [choice] = response.json()["choices"]
    assert choice["index"] == 0
    return choice["message"]["content"]


def test_same_prompt_with_consecutive_seeds_is_one_request_and_each_caller_gets_its_own_answer() -> None:
    server = FakeServer()
    responses = run(server, [{**BODY, "seed": s} for s in (11, 10, 12)])
    assert [{k: v for k, v in c.items() if k not in ("n", "seed")} for c in server.chats] == [BODY]
    assert server.chats[0]["n"] == 3 and server.chats[0]["seed"] == 10
    assert [content(r) for r in responses] == ["answer for seed 11 " * 2, "answer for seed 10 ", "answer for seed 12 " * 3]
    # The first answer keeps the server's usage; the others count their own tokens and the prompt as cached.
    assert responses[1].json()["usage"]["completion_tokens"] == 4
    assert responses[0].json()["usage"] == {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58,
                                            "prompt_tokens_details": {"cached_tokens": 50}}
    assert responses[2].json()["usage"]["completion_tokens"] == 12


def test_gaps_in_seeds_different_bodies_and_the_slot_limit_split_the_requests() -> None:
    server = FakeServer()
    run(server, [{**BODY, "seed": s} for s in (1, 2, 4)] + [{**BODY, "seed": 3, "temperature": 0.2}])
    assert sorted((c["seed"], c.get("n", 1)) for c in server.chats) == [(1, 2), (3, 1), (4, 1)]
    server = FakeServer()
    run(server, [{**BODY, "seed": s} for s in range(5)], max_n=4)
    assert sorted((c["seed"], c.get("n", 1)) for c in server.chats) == [(0, 4), (4, 1)]


@pytest.mark.parametrize("extra", [{}, {"seed": 1, "stream": True}, {"seed": 1, "n": 2}, {"seed": "1"}])
def test_requests_that_cannot_merge_pass_through_unchanged(extra: dict[str, Any]) -> None:
    server = FakeServer()
    bodies = [{**BODY, **extra, **({"seed": s} if "seed" in extra else {})} for s in (1, 2)]
    if extra.get("seed") == "1":
        bodies = [{**BODY, "seed": "1"}, {**BODY, "seed": "2"}]
    responses = run(server, bodies)  # (the fake answers a streamed request with one JSON body)
    assert sorted(server.chats, key=str) == sorted(bodies, key=str)
    assert all(r.status_code == 200 for r in responses)


def test_a_lone_request_goes_out_with_its_seed() -> None:
    server = FakeServer()
    [response] = run(server, [{**BODY, "seed": 7}])
    assert server.chats == [{**BODY, "seed": 7}] and content(response) == "answer for seed 7 "


def test_a_server_error_is_every_callers_error() -> None:
    server = FakeServer(status=503)
    responses = run(server, [{**BODY, "seed": s} for s in (1, 2, 3)])
    assert len(server.chats) == 1 and [r.status_code for r in responses] == [503, 503, 503]


def test_a_cancelled_caller_does_not_take_the_others_answers_with_it() -> None:
    server = FakeServer()

    async def scenario() -> list[str]:
        transport = CoalescingTransport(httpx2.MockTransport(server), window_s=0.05)
        async with httpx2.AsyncClient(transport=transport) as client:
            first = asyncio.create_task(client.post(URL, json={**BODY, "seed": 1}))
            second = asyncio.create_task(client.post(URL, json={**BODY, "seed": 2}))
            await asyncio.sleep(0.01)
            first.cancel()
            return [content(await second)]

    # The same answer the group would have given it (seed 2), and the given-up answer is not asked for.
    assert asyncio.run(scenario()) == ["answer for seed 2 "]
    assert server.chats == [{**BODY, "seed": 2}]


def test_a_group_whose_callers_all_gave_up_is_never_sent() -> None:
    server = FakeServer()

    async def scenario() -> None:
        transport = CoalescingTransport(httpx2.MockTransport(server), window_s=0.05)
        async with httpx2.AsyncClient(transport=transport) as client:
            tasks = [asyncio.create_task(client.post(URL, json={**BODY, "seed": s})) for s in (1, 2)]
            await asyncio.sleep(0.01)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.1)  # past the window

    asyncio.run(scenario())
    assert server.chats == []


def test_a_request_in_flight_is_cancelled_when_all_its_callers_give_up_and_only_then() -> None:
    stopped: list[int] = []  # seeds of requests the server saw cancelled

    async def scenario() -> list[str]:
        arrived, release = asyncio.Event(), asyncio.Event()

        async def slow(request: httpx2.Request) -> httpx2.Response:
            body = json.loads(request.content)
            arrived.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                stopped.append(body["seed"])
                raise
            return FakeServer()(request)

        transport = CoalescingTransport(httpx2.MockTransport(slow), window_s=0.01)
        async with httpx2.AsyncClient(transport=transport) as client:
            tasks = [asyncio.create_task(client.post(URL, json={**BODY, "seed": s})) for s in (1, 2, 3)]
            await arrived.wait()
            tasks[0].cancel()
            tasks[1].cancel()
            await asyncio.sleep(0.02)
            assert stopped == []  # one caller still waits: its answer is still coming
            tasks[2].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.02)
            release.set()
            return [str(t.cancelled()) for t in tasks]

    assert asyncio.run(scenario()) == ["True", "True", "True"]
    assert stopped == [1]  # the one merged request (seeds 1-3, n = 3) was cancelled


def test_a_transport_failure_reaches_every_caller() -> None:
    def broken(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    with pytest.raises(httpx2.ConnectError):
        asyncio.run(send_all(CoalescingTransport(httpx2.MockTransport(broken)), [{**BODY, "seed": s} for s in (1, 2)]))
