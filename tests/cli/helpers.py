"""A demo repository with a relay.toml, and `relay` invoked through its CLI with scripted models in place."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel
from typer.testing import CliRunner, Result

from relaycode.testing.sample_repos import make_demo_repo

CHEAP = "google:gemini-2.5-flash"
REVIEWER = "openai:gpt-5-mini"
RELAY_TOML = f'[stages.implement]\nmodel = "{CHEAP}"\n[stages.verify]\ncommands = ["python -m pytest -q"]\n'


def demo_repo(root: Path, relay_toml: str = RELAY_TOML) -> Path:
    """The pagination demo repository with `relay_toml` committed."""
    repo = make_demo_repo(root, bug="pagination")
    (repo / "relay.toml").write_text(relay_toml)
    subprocess.run(["git", "add", "relay.toml"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "cfg"], cwd=repo, check=True)
    return repo


def interrupting_model() -> FunctionModel:
    """A model whose request is interrupted the way Ctrl-C interrupts a real one."""

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise KeyboardInterrupt

    return FunctionModel(fn, model_name="interrupted")


@dataclass
class Relay:
    """Invokes `relay` in-process; `models` are the doubles the next run gets, by model spec."""

    models: dict[str, Model] = field(default_factory=dict)

    def __call__(self, *args: str) -> Result:
        from relaycode.cli import _register, app

        _register()
        return CliRunner().invoke(app, list(args))


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    import relaycode.pipeline as pipeline

    for var in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.setenv(var, "test-key")  # the models are doubles; keys only satisfy the pre-flight check
    monkeypatch.setenv("TERM", "dumb")
    cli = Relay()
    real: Callable[[pipeline.RunOptions], pipeline.RunResult] = pipeline.run_task

    def with_doubles(options: pipeline.RunOptions) -> pipeline.RunResult:
        options.model_overrides = dict(cli.models)
        return real(options)

    monkeypatch.setattr(pipeline, "run_task", with_doubles)
    yield cli
