"""Local servers take turns; requests to the server whose turn it is go in together (local/turns.py)."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from relaycode.local.turns import ServerTurns, TurnTakingTransport, turns_for_this_loop


class Servers:
    """Several fake servers behind one transport, recording when each request ran."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.events: list[tuple[str, str]] = []
        self.running: set[str] = set()
        self.overlap_of_servers = False

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        name = f"{request.url.port}{request.url.params['id']}"
        server = str(request.url.port)
        if any(r.split("/")[0] != server for r in self.running):
            self.overlap_of_servers = True
        self.running.add(name)
        self.events.append(("start", name))
        await asyncio.sleep(self.seconds)
        self.running.discard(name)
        self.events.append(("end", name))
        return httpx2.Response(200, json={"from": name})


async def send(client: httpx2.AsyncClient, port: int, path: str, delay: float = 0.0,
               endpoint: str = "/v1/chat/completions") -> str:
    await asyncio.sleep(delay)
    response = await client.post(f"http://127.0.0.1:{port}{endpoint}", params={"id": path}, json={})
    return str(response.json()["from"])


def test_two_servers_never_compute_at_once_and_one_servers_requests_go_in_together() -> None:
    servers = Servers()

    async def main() -> list[str]:
        async with httpx2.AsyncClient(transport=TurnTakingTransport(httpx2.MockTransport(servers))) as client:
            return await asyncio.gather(send(client, 1, "/a1"), send(client, 1, "/a2"), send(client, 2, "/b1"),
                                        send(client, 2, "/b2", delay=0.01))

    assert asyncio.run(main()) == ["1/a1", "1/a2", "2/b1", "2/b2"]
    assert not servers.overlap_of_servers
    starts = [name for kind, name in servers.events if kind == "start"]
    # Server 1's two requests ran side by side, then server 2's two.
    assert servers.events[:2] == [("start", "1/a1"), ("start", "1/a2")] and starts[2:] == ["2/b1", "2/b2"]


def test_a_waiting_server_is_not_starved_by_new_requests_to_the_busy_one() -> None:
    servers = Servers()

    async def main() -> None:
        async with httpx2.AsyncClient(transport=TurnTakingTransport(httpx2.MockTransport(servers))) as client:
            await asyncio.gather(send(client, 1, "/a1"), send(client, 2, "/b1", delay=0.01),
                                 send(client, 1, "/a2", delay=0.02))

    asyncio.run(main())
    starts = [name for kind, name in servers.events if kind == "start"]
    assert starts == ["1/a1", "2/b1", "1/a2"]  # a2 arrived after b1 began waiting: it waits its turn
    assert not servers.overlap_of_servers


def test_token_counts_and_health_checks_do_not_wait_for_a_turn() -> None:
    servers = Servers()

    async def main() -> list[str]:
        async with httpx2.AsyncClient(transport=TurnTakingTransport(httpx2.MockTransport(servers))) as client:
            return await asyncio.gather(send(client, 1, "/a1"), send(client, 2, "/count", delay=0.01,
                                                                         endpoint="/tokenize"))

    asyncio.run(main())
    # Server 2's /tokenize ran while server 1 computed: cheap requests are not held back by the gate.
    assert servers.overlap_of_servers
    assert servers.events[:2] == [("start", "1/a1"), ("start", "2/count")]


def test_a_cancelled_waiter_gives_way_and_the_gate_stays_usable() -> None:
    async def main() -> list[str]:
        turns = ServerTurns()
        order: list[str] = []

        async def use(server: str, seconds: float) -> None:
            async with turns.turn(server):
                order.append(f"in {server}")
                await asyncio.sleep(seconds)

        first = asyncio.create_task(use("a", 0.05))
        await asyncio.sleep(0)
        blocked = asyncio.create_task(use("b", 0.01))
        await asyncio.sleep(0)
        behind = asyncio.create_task(use("a", 0.01))  # behind b: waits although a is running
        await asyncio.sleep(0.01)
        assert order == ["in a"]
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        await asyncio.sleep(0)
        assert order == ["in a", "in a"]  # b gone: the second request to a joins the first
        await asyncio.gather(first, behind)
        assert (turns.holder, turns.active) == (None, 0)
        await use("c", 0)
        return order

    assert asyncio.run(main()) == ["in a", "in a", "in c"]


def test_a_waiter_cancelled_just_before_the_turn_passes_to_it_does_not_break_the_gate() -> None:
    # The waiter's future is cancelled at once, its except-clause runs only on its next step: a
    # release in between (here the holder leaving in the same step) must skip it, not grant it.
    async def main() -> tuple[str | None, int]:
        turns = ServerTurns()

        async def use(server: str) -> None:
            async with turns.turn(server):
                await asyncio.sleep(0)

        async with turns.turn("a"):
            waiting = asyncio.create_task(use("b"))
            behind = asyncio.create_task(use("c"))
            await asyncio.sleep(0)
            waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.wait_for(behind, 1)  # c's turn came, b's did not eat it
        await asyncio.wait_for(use("b"), 1)
        return turns.holder, turns.active

    assert asyncio.run(main()) == (None, 0)


def test_each_event_loop_has_its_own_gate() -> None:
    async def gate() -> ServerTurns:
        return turns_for_this_loop()

    first, second = asyncio.run(gate()), asyncio.run(gate())
    assert first is not second


def test_local_models_send_through_the_coalescing_then_the_turn_taking_transport() -> None:
    from relaycode.local.coalesce import CoalescingTransport
    from relaycode.models import openai_compatible_model

    model = openai_compatible_model("m", "http://127.0.0.1:9/v1", "local", coalesce_candidates=True)
    transport = model.client._client._transport  # type: ignore[attr-defined]
    assert isinstance(transport, CoalescingTransport)
    assert isinstance(transport._inner, TurnTakingTransport)
    plain = openai_compatible_model("m", "http://127.0.0.1:9/v1", "key")  # a user's endpoint: not gated
    assert not isinstance(getattr(plain.client._client, "_transport", None), CoalescingTransport)  # type: ignore[attr-defined]
