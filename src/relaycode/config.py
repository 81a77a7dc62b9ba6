"""relay's configuration: which model runs each stage, budgets, limits.

A config comes from (first found) `--config FILE`, `relay.toml` in the
repository, `~/.config/relay/config.toml`, or a built-in preset. Presets are
plain dicts in `presets.py`; a file may start from one with `preset = "api"`
and override any key. Every field has a docstring: `relay config show` and the
docs are generated from them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from relaycode.errors import ConfigError

Severity = Literal["blocker", "major", "minor", "nit"]
SEVERITIES: tuple[Severity, ...] = ("blocker", "major", "minor", "nit")
Stage = Literal["plan", "implement", "review"]
STAGES: tuple[str, ...] = ("plan", "implement", "verify", "review")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, use_attribute_docstrings=True)


class Price(_Strict):
    """A price override in dollars per million tokens (for local, self-hosted or unlisted models)."""

    input_per_mtok: float = Field(ge=0)
    """Dollars per million input tokens."""
    output_per_mtok: float = Field(ge=0)
    """Dollars per million output tokens."""
    cache_read_per_mtok: float | None = Field(default=None, ge=0)
    """Dollars per million cached input tokens read; defaults to the input price."""
    cache_write_per_mtok: float | None = Field(default=None, ge=0)
    """Dollars per million input tokens written to the cache; defaults to the input price."""


class ModelSettings(_Strict):
    """Per-model settings, keyed by model name in `[models."provider:model"]`."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature; provider default when unset."""
    max_tokens: int = Field(default=4096, gt=0)
    """Maximum output tokens per request. Also the worst case the budget reserves."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Timeout of one request, in seconds."""
    fallback: list[str] = Field(default_factory=list)
    """Models to try, in order, when this one still fails after its retries (never on auth errors)."""
    price: Price | None = None
    """Price override; otherwise genai-prices' bundled data (local models cost $0)."""
    context_tokens: int | None = Field(default=None, gt=0)
    """Context window, used to size review chunks and repo maps. Guessed when unset."""
    vendor: str | None = None
    """Vendor family for the diversity rule; derived from the provider when unset."""
    protocol: Literal["auto", "edit-blocks", "agent"] = "auto"
    """How this model implements: "edit-blocks" (it answers with SEARCH/REPLACE blocks or whole files; works
    with any model), "agent" (an action loop: read_file, search, edit, run, finish; native tool calls when the
    model's profile uses tool calls, else one JSON-schema-constrained action per step), or "auto" (the
    model's profile decides; every built-in profile uses edit-blocks so far)."""
    edit_format: Literal["auto", "search-replace", "whole-file"] = "auto"
    """Edit blocks as SEARCH/REPLACE or as whole files; auto = the model's profile (whole files for local models)."""
    samples: int | None = Field(default=None, ge=1, le=16)
    """Candidates per implement attempt for this model; unset: `stages.implement.samples`."""
    answer_grammar: bool | None = None
    """Constrain whole-file answers with a GBNF grammar (the server must accept `grammar`, as llama-server
    does); unset: the model's profile (on for local models)."""


class Endpoint(_Strict):
    """An OpenAI-compatible server (vLLM, Ollama, llama.cpp server, LM Studio): models `NAME:model`."""

    base_url: str
    """Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1`."""
    api_key_env: str | None = None
    """Environment variable holding the API key, if the server needs one."""
    vendor: str | None = None
    """Vendor family of the models served (for the diversity rule); defaults to the endpoint name."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")


class PlanStage(_Strict):
    model: str | None = None
    """The planner, `provider:model`. Unset: no planning stage (the implementer gets the task)."""
    approve: bool = True
    """Ask a person to approve or edit the plan when a terminal is attached (skipped with --yes)."""


DEFAULT_SAMPLE_TEMPERATURE = 0.8
"""llama-server's own default temperature: candidates sampled at it differ enough to disagree."""


class ImplementStage(_Strict):
    model: str
    """The implementer, `provider:model`."""
    escalate_to: list[str] = Field(default_factory=list)
    """Stronger implementers to move to, in order, when attempts keep failing verification."""
    escalate_after: int = Field(default=1, ge=1)
    """Failed attempts of one implementer before escalating to the next."""
    start_strong_without_checks: bool = True
    """With `escalate_to`, start with the strongest implementer when the run has nothing that can fail
    a wrong change (no verify command but a linter, no doc examples): escalation is gated by
    verification, and without it a cheap first attempt would be accepted unchecked."""
    retry_temperature: float | None = Field(default=None, ge=0)
    """Sampling temperature for an implementer's attempts after its first failed one (its first attempt
    uses the model's own `temperature`). Unset: always the model's. Pairs with greedy models
    (`temperature = 0`): greedy decoding answers a retry much like the first try (on QuixBugs the
    greedy 1.5B returned its file unchanged twice in 18 of 40 cases), sampling makes it differ."""
    samples: int = Field(default=1, ge=1, le=16)
    """Candidate answers per implement attempt (edit-block models; a model's own `samples` wins). Above 1,
    each candidate is verified in a scratch copy of the tree and a passing one is kept
    (`stages/candidates.py`); 1: one answer, retried in the same conversation when it does not apply."""
    sample_temperature: float | None = Field(default=None, ge=0, le=2)
    """Temperature of candidates 2..N (candidate 1 keeps the attempt's temperature). Unset: 0.8."""
    max_steps: int = Field(default=12, ge=1)
    """Limit on model turns inside one implement attempt (edit retries, agent steps)."""
    max_tokens_per_attempt: int | None = Field(default=None, gt=0)
    """Limit on tokens (input + output) one agent-loop attempt may use; unset: only the budget limits it."""
    max_wall_s: float = Field(default=600.0, gt=0)
    """Limit on the wall time of one agent-loop attempt (model calls and commands), in seconds."""


class ReviewStage(_Strict):
    models: list[str] = Field(default_factory=list)
    """Reviewer models, run in parallel. Empty: no review stage."""
    block_on: Severity | Literal["none"] = "major"
    """Findings at or above this severity go back to the implementer; "none" makes review advisory."""
    min_agree: int = Field(default=1, ge=1)
    """Only findings raised by at least this many reviewers count."""


class VerifyStage(_Strict):
    commands: list[str] | None = None
    """Shell commands that must exit 0. Unset: auto-detected (pytest, ruff, npm test)."""
    timeout_s: float = Field(default=300.0, gt=0)
    """Timeout per command; its process group is killed when exceeded."""
    python: str | None = None
    """The project's virtualenv (a directory or its `bin/python`, relative to the repository or
    absolute) whose tools come first on PATH for verify commands. Unset: the repository's `.venv` or
    `venv` if it has one, else relay's own interpreter (which has pytest)."""


class Stages(_Strict):
    plan: PlanStage = Field(default_factory=PlanStage)
    """The planning stage."""
    implement: ImplementStage
    """The implementing stage."""
    review: ReviewStage = Field(default_factory=ReviewStage)
    """The review stage."""
    verify: VerifyStage = Field(default_factory=VerifyStage)
    """The verification stage (no model)."""


class Budget(_Strict):
    run_usd: float | None = Field(default=None, gt=0)
    """Hard limit on dollars for one run. Checked before every request against its worst case."""
    stage_usd: dict[Stage, float] = Field(default_factory=dict)
    """Hard limit on dollars per stage, e.g. `stage_usd.review = 0.20`."""
    stage_requests: dict[Stage, int] = Field(default_factory=dict)
    """Maximum model requests per stage in one run."""
    stage_tokens: dict[Stage, int] = Field(default_factory=dict)
    """Maximum tokens (input + output) per stage in one run."""


class SandboxSettings(_Strict):
    enabled: bool = True
    """Run commands on model-written code inside bubblewrap. `--no-sandbox` turns it off, loudly."""
    env_allow: list[str] = Field(default_factory=list)
    """Extra environment variables passed into sandboxed commands (secrets never are)."""
    memory_mb: int = Field(default=4096, gt=0)
    """Address-space limit of sandboxed commands."""
    max_procs: int = Field(default=256, gt=0)
    """Process-count limit of sandboxed commands."""


class TraceSettings(_Strict):
    exporter: Literal["off", "otlp", "file"] = "off"
    """Where OpenTelemetry spans go: nowhere, an OTLP endpoint (OTEL_EXPORTER_OTLP_*), or the run dir."""
    include_content: bool = False
    """Put prompt and completion text into spans. Off: no prompt text leaves the machine."""


class RetrySettings(_Strict):
    max_attempts: int = Field(default=4, ge=1, le=10)
    """Attempts per request, including the first, for retryable errors (never auth errors)."""
    backoff_s: float = Field(default=1.0, ge=0)
    """Base of the exponential backoff between attempts (with jitter)."""
    max_backoff_s: float = Field(default=30.0, ge=0)
    """Upper bound on one wait, Retry-After included."""


class Config(_Strict):
    """The whole resolved configuration of a run."""

    stages: Stages
    """Stage → model mapping."""
    budget: Budget = Field(default_factory=Budget)
    """Dollar, request and token limits."""
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    """Per-model settings keyed by `provider:model`."""
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    """OpenAI-compatible endpoints; a model `NAME:model` uses endpoint NAME."""
    diversity: Literal["model", "vendor", "off"] = "vendor"
    """Reviewers must differ from the implementer: by model, by vendor family (default), or not at all."""
    unpriced: Literal["refuse", "allow"] = "refuse"
    """A model with no known price: refuse to start, or allow and report its cost as unknown."""
    max_iterations: int = Field(default=3, ge=1)
    """Implement → verify → review rounds before giving up."""
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    """Sandbox for commands run on model-written code."""
    trace: TraceSettings = Field(default_factory=TraceSettings)
    """OpenTelemetry tracing."""
    retry: RetrySettings = Field(default_factory=RetrySettings)
    """Retries of failed model requests."""
    seed: int | None = Field(default=None, ge=0)
    """Base seed for sampled model requests (servers that honour a per-request seed, such as
    llama-server, then give the same answers on a rerun). Unset: the server's own randomness. The bench
    sets it per (case, config, repeat)."""
    preset: str | None = None
    """The preset this config started from, if any."""
    source: str = "<defaults>"
    """Where this config was read from (set by the loader)."""

    def settings_for(self, model: str) -> ModelSettings:
        return self.models.get(model) or ModelSettings()

    def all_models(self) -> list[str]:
        """Every model the config uses, in stage order, without duplicates."""
        names: list[str] = []
        for name in [
            self.stages.plan.model,
            self.stages.implement.model,
            *self.stages.implement.escalate_to,
            *self.stages.review.models,
        ]:
            if name and name not in names:
                names.append(name)
        for name in list(names):  # fallbacks are used models too: priced, keyed and checked
            for fallback in self.settings_for(name).fallback:
                if fallback not in names:
                    names.append(fallback)
        return names

    def public_dict(self) -> dict[str, Any]:
        """The resolved config as `relay config show --json` prints it."""
        return self.model_dump(mode="json", exclude={"source"})


def check_diversity(config: Config) -> None:
    """A reviewer must not be the implementer (nor, by default, of its vendor family)."""
    from relaycode.models import vendor_of

    if config.diversity == "off":
        return
    implementers = [config.stages.implement.model, *config.stages.implement.escalate_to]
    for reviewer in config.stages.review.models:
        for implementer in implementers:
            if reviewer == implementer:
                raise ValueError(
                    f"stages.review model {reviewer!r} is also the implementer (stages.implement): "
                    "a model must not review its own work; pick a different reviewer or set diversity = \"off\""
                )
            if config.diversity == "vendor":
                rv = vendor_of(reviewer, config)
                iv = vendor_of(implementer, config)
                if rv == iv:
                    raise ValueError(
                        f"stages.review model {reviewer!r} and stages.implement model {implementer!r} "
                        f"are both from vendor {rv!r}: pick a reviewer of another vendor, "
                        'or set diversity = "model" (only the exact model must differ)'
                    )


# ---------------------------------------------------------------- loading


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_validation(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key {loc!r}: remove it or check its spelling (see `relay config show`)"
    if kind == "missing":
        return f"{source}: missing key {loc!r}: add it"
    msg = err["msg"].removeprefix("Value error, ")
    if err["loc"]:
        return f"{source}: key {loc!r}: {msg}"
    return f"{source}: {msg}"


def config_from_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> Config:
    """Validate a config mapping (already merged over its preset); raises ConfigError with one line."""
    from relaycode.presets import PRESETS

    preset = data.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"{source}: key 'preset': unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        data = _merge(PRESETS[preset], data)
    try:
        config = Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from None
    from relaycode.models import check_model_names

    try:
        check_model_names(config)
        check_diversity(config)
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "relay" / "config.toml"


def find_config_file(repo: Path | None) -> Path | None:
    """`relay.toml` in the repository, else the user's config file, else None."""
    if repo is not None and (repo / "relay.toml").is_file():
        return repo / "relay.toml"
    user = user_config_path()
    return user if user.is_file() else None


def load_config(
    *, config_file: Path | None = None, preset: str | None = None, repo: Path | None = None
) -> Config:
    """Resolve the config: `--config FILE` > `--preset` > relay.toml > user config > the `local` preset.

    `--preset` with a config file applies the file's keys over that preset.
    """
    path = config_file or (None if preset else find_config_file(repo))
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
    if preset is not None:
        data = {**data, "preset": preset}
    elif "preset" not in data and path is None:
        data = {"preset": "local"}
    return config_from_dict(data, source=str(path) if path else f"preset {data.get('preset')}")
