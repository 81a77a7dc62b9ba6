"""CPU seconds of a pair: the meter reads only the servers of the config's own models."""

from __future__ import annotations

import os
import time

import pytest

from relaycode.bench.runner import resolve_configs


def test_server_cpu_counts_only_the_configs_own_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from relaycode.bench import cpu
    from relaycode.local import server

    handles = [SimpleNamespace(model="mine", pid=os.getpid()), SimpleNamespace(model="other", pid=os.getpid() + 10**6)]
    monkeypatch.setattr(server, "running_servers", lambda: handles)
    meter = cpu.CpuMeter(frozenset({"mine"}))
    assert list(meter.servers0) == [os.getpid()]  # the other model's server is not read at all
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:
        pass  # burn CPU "in the server" (this process stands in for it)
    seconds = meter.stop(shared_servers=False)
    assert seconds["servers"] >= 0.2 and seconds["total"] >= seconds["servers"] + seconds["relay"] - 0.01
    assert cpu.CpuMeter().stop(shared_servers=True)["servers"] == 0.0  # no local models, no server CPU
    assert cpu.local_model_names(resolve_configs(["local-cascade"])[0].config) == {
        "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
