"""relay's configuration: which model runs each stage, budgets, limits.

A config is layered key by key, as git, ruff or pip configs are: built-in defaults < a preset
< the user's `~/.config/relay/config.toml` < the repository's `relay.toml` < `--config FILE`
< the command line. `--preset` (or the highest layer's `preset = "..."`) picks the preset; with
none, the offline `local` preset is the base unless a layer names an implementer itself.

The repository's `relay.toml` is the repository's say, not the user's: settings that weaken
the sandbox, choose where requests and keys go or what is mounted, or raise a budget are
ignored from it, each with a one-line notice (`RESTRICTED`), unless the user trusts that exact
file (`relay trust`, see `trust.py`). Presets are plain dicts in `presets.py`. Every field has
a docstring: `relay config show` and the docs are generated from them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from relaycode.errors import ConfigError
from relaycode.providers import PROVIDERS, builtin_vendor, check_model, parse_model

Severity = Literal["blocker", "major", "minor", "nit"]
SEVERITIES: tuple[Severity, ...] = ("blocker", "major", "minor", "nit")
Stage = Literal["plan", "implement", "review"]
STAGES: tuple[str, ...] = ("plan", "implement", "verify", "review")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, use_attribute_docstrings=True)


class Price(_Strict):
    """A price override in dollars per million tokens (for local, self-hosted or unlisted models)."""

    input_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    """Dollars per million input tokens."""
    output_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    """Dollars per million output tokens."""
    cache_read_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Dollars per million cached input tokens read; defaults to the input price."""
    cache_write_per_mtok: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Dollars per million input tokens written to the cache; defaults to the input price."""


class ModelOptions(_Strict):
    """Per-model settings, keyed by model name in `[models."provider:model"]`.

    (Named apart from pydantic-ai's `ModelSettings`, the per-request settings a model is sent.)"""

    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature; provider default when unset."""
    max_tokens: int = Field(default=4096, gt=0)
    """Maximum output tokens per request. Also the worst case the budget reserves."""
    timeout_s: float = Field(default=120.0, gt=0, allow_inf_nan=False)
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
    model: str | None = Field(default=None, min_length=1)
    """The planner, `provider:model`. Unset: no planning stage (the implementer gets the task)."""
    approve: bool = True
    """Ask a person to approve or edit the plan when a terminal is attached (skipped with --yes)."""


DEFAULT_SAMPLE_TEMPERATURE = 0.8
"""llama-server's own default temperature: candidates sampled at it differ enough to disagree."""


class ImplementStage(_Strict):
    model: str = Field(min_length=1)
    """The implementer, `provider:model`."""
    escalate_to: list[str] = Field(default_factory=list)
    """Stronger implementers to move to, in order, when attempts keep failing verification."""
    escalate_after: int = Field(default=1, ge=1)
    """Failed attempts of one implementer before escalating to the next."""
    start_strong_without_checks: bool = True
    """With `escalate_to`, start with the strongest implementer when the run has nothing that can fail
    a wrong change (no verify command but a linter, no doc examples): escalation is gated by
    verification, and without it a cheap first attempt would be accepted unchecked."""
    retry_temperature: float | None = Field(default=None, ge=0, le=2)
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
    generate_checks: bool = False
    """When nothing pinned can fail a wrong change (no tests, no `>>>` examples) and an implementer samples,
    ask its model once per run for small checks (a call and its expected value), run them in the sandbox,
    and rank candidates by them (CodeT's dual agreement; `stages/generated_checks.py`). Evidence for
    choosing only: such a run still ends `unverified`. On in the presets that sample. A repository's
    relay.toml may turn it off, not on (it costs a model request)."""
    max_steps: int = Field(default=12, ge=1)
    """Limit on model turns inside one implement attempt (edit retries, agent steps)."""
    max_tokens_per_attempt: int | None = Field(default=None, gt=0)
    """Limit on tokens (input + output) one agent-loop attempt may use; unset: only the budget limits it."""
    max_wall_s: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    """Limit on the wall time of one agent-loop attempt (model calls and commands), in seconds."""


class ReviewStage(_Strict):
    models: list[str] = Field(default_factory=list)
    """Reviewer models, run in parallel. Empty: no review stage."""
    block_on: Severity | Literal["none"] = "major"
    """Findings at or above this severity go back to the implementer; "none" makes review advisory."""
    min_agree: int = Field(default=1, ge=1)
    """Only findings raised by at least this many reviewers count."""
    samples: int = Field(default=1, ge=1, le=9)
    """Answers asked of each reviewer per chunk (self-consistency). Above 1, a reviewer's finding counts
    only when more than half of its answers raise it (same file, nearby lines): a real problem tends to
    be seen again, an imagined one rarely twice. A local server answers them as one prompt."""
    judge: str = "none"
    """Who gives merged findings a second opinion (`relay review`): "reviewers" (another reviewer of
    the same review, one that did not raise the finding), a model (provider:name), or "none"."""

    @field_validator("judge")
    @classmethod
    def _judge(cls, value: str) -> str:
        if value not in ("none", "reviewers") and ":" not in value:
            raise ValueError(f"judge {value!r}: give a model (provider:name), 'reviewers' or 'none'")
        return value


class VerifyStage(_Strict):
    commands: list[str] | None = None
    """Shell commands that must exit 0. Unset: auto-detected (pytest, ruff, npm test)."""
    timeout_s: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    """Time limit of one verification, all its commands together; a command still running when it is
    used up has its process group killed, the ones after it are not run."""
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


Dollars = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]


class Budget(_Strict):
    run_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Hard limit on dollars for one run. Checked before every request against its worst case."""
    stage_usd: dict[Stage, Dollars] = Field(default_factory=dict)
    """Hard limit on dollars per stage, e.g. `stage_usd.review = 0.20`."""
    stage_requests: dict[Stage, Count] = Field(default_factory=dict)
    """Maximum model requests per stage in one run."""
    stage_tokens: dict[Stage, Count] = Field(default_factory=dict)
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
    backoff_s: float = Field(default=1.0, ge=0, le=600, allow_inf_nan=False)
    """Base of the exponential backoff between attempts (with jitter)."""
    max_backoff_s: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False)
    """Upper bound on one wait, Retry-After included."""


class Config(_Strict):
    """The whole resolved configuration of a run."""

    stages: Stages
    """Stage → model mapping."""
    budget: Budget = Field(default_factory=Budget)
    """Dollar, request and token limits."""
    models: dict[str, ModelOptions] = Field(default_factory=dict)
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
    """Where this config was read from (set by the loader): its layers, lowest first."""
    origins: dict[str, str] = Field(default_factory=dict, exclude=True)
    """Which layer set each key (dotted), for `relay config show` (set by the loader)."""
    notices: list[str] = Field(default_factory=list, exclude=True)
    """Settings the loader ignored and why (a repository config's restricted keys), one line each."""

    def settings_for(self, model: str) -> ModelOptions:
        return self.models.get(model) or ModelOptions()

    def vendor_of(self, spec: str) -> str:
        """The vendor family of a model, for the diversity rule: its own `vendor` setting, else its
        endpoint's `vendor` (or the endpoint's name), else the built-in provider's (`providers.py`)."""
        ref = parse_model(spec, self.endpoints)
        settings = self.models.get(spec)
        if settings is not None and settings.vendor:
            return settings.vendor
        endpoint = self.endpoints.get(ref.provider)
        if endpoint is not None:
            return endpoint.vendor or ref.provider
        return builtin_vendor(ref)

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
    if config.diversity == "off":
        return
    implementers = [config.stages.implement.model, *config.stages.implement.escalate_to]
    judge = config.stages.review.judge
    if judge in implementers:
        raise ValueError(f"stages.review judge {judge!r} is also the implementer (stages.implement): "
                         "a model must not judge findings about its own work; pick another judge or set diversity = \"off\"")
    for reviewer in config.stages.review.models:
        for implementer in implementers:
            if reviewer == implementer:
                raise ValueError(
                    f"stages.review model {reviewer!r} is also the implementer (stages.implement): "
                    "a model must not review its own work; pick a different reviewer or set diversity = \"off\""
                )
            if config.diversity == "vendor":
                rv = config.vendor_of(reviewer)
                iv = config.vendor_of(implementer)
                if rv == iv:
                    raise ValueError(
                        f"stages.review model {reviewer!r} and stages.implement model {implementer!r} "
                        f"are both from vendor {rv!r}: pick a reviewer of another vendor, "
                        'or set diversity = "model" (only the exact model must differ)'
                    )


# ---------------------------------------------------------------- loading

#: Settings a repository's own relay.toml may not set unless the user trusts that file (`relay trust`):
#: they weaken the sandbox, choose what the sandbox mounts, choose where requests, code and keys go,
#: or lower what the budget sees. `*` matches one key (a model name).
RESTRICTED: tuple[tuple[str, ...], ...] = (
    ("sandbox",),
    ("stages", "verify", "python"),
    ("endpoints",),
    ("models", "*", "price"),
    ("unpriced",),
    ("trace",),
    ("stages", "plan", "approve"),
)

#: Limits a repository may only lower (below what the earlier layers, or the field's default, allow):
#: dollars, requests and tokens, and everything that bounds how long relay runs outside the sandbox.
#: A switch (bool) here may only be turned off.
LOWER_ONLY: tuple[tuple[str, ...], ...] = (
    ("budget",),
    ("max_iterations",),
    ("retry",),
    ("stages", "verify", "timeout_s"),
    ("stages", "implement", "max_steps"),
    ("stages", "implement", "max_tokens_per_attempt"),
    ("stages", "implement", "max_wall_s"),
    ("stages", "implement", "generate_checks"),
    ("stages", "review", "samples"),
    ("models", "*", "timeout_s"),
)

Leaf = tuple[str, ...]


@dataclass(frozen=True)
class ConfigLayer:
    """One source of settings. Later layers override earlier ones key by key."""

    name: str
    """How `relay config show` names it: `preset local`, a file path, `command line`."""
    data: Mapping[str, Any]
    trusted: bool = True
    """False for a repository's relay.toml the user has not trusted."""


def _flatten(data: Mapping[str, Any], prefix: Leaf = ()) -> dict[Leaf, Any]:
    out: dict[Leaf, Any] = {}
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def _unflatten(leaves: Mapping[Leaf, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in leaves.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def _matches(path: Leaf, pattern: Leaf) -> bool:
    return len(path) >= len(pattern) and all(p in ("*", k) for p, k in zip(pattern, path, strict=False))


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class _Layered:
    leaves: dict[Leaf, Any] = dc_field(default_factory=dict)
    origins: dict[Leaf, str] = dc_field(default_factory=dict)
    notices: list[str] = dc_field(default_factory=list)

    def apply(self, layer: ConfigLayer) -> None:
        for path, value in _flatten(layer.data).items():
            if path == ("preset",):
                continue
            if not layer.trusted and not self._allowed_from_repository(layer, path, value):
                continue
            # A table replaced by a scalar (or the reverse) drops what the earlier layers set under it.
            for old in self._covered(path):
                del self.leaves[old]
                self.origins.pop(old, None)
            self.leaves[path] = value
            self.origins[path] = layer.name

    def _covered(self, path: Leaf) -> list[Leaf]:
        return [p for p in self.leaves if p[: len(path)] == path or path[: len(p)] == p]

    def _allowed_from_repository(self, layer: ConfigLayer, path: Leaf, value: Any) -> bool:
        dotted = ".".join(path)
        if any(_matches(path, r) for r in RESTRICTED):
            self.notices.append(f"{layer.name}: ignored {dotted!r}: a repository's config may not set it "
                                "(run `relay trust` in the repository to allow this file)")
            return False
        # An empty table or a scalar over a table must not erase limits the user's layers set.
        erased = [p for p in self._covered(path) if p != path and any(_matches(p, r) for r in (*RESTRICTED, *LOWER_ONLY))]
        if erased:
            self.notices.append(f"{layer.name}: ignored {dotted!r}: it would remove {'.'.join(erased[0])} "
                                f"set by {self.origins[erased[0]]}")
            return False
        if any(_matches(path, r) for r in LOWER_ONLY) and value != {}:
            current = self.leaves.get(path, _default_for(path))
            if isinstance(current, bool) and isinstance(value, bool):
                raised = value and not current  # a switch that costs requests: a repository may turn it off only
            else:
                raised = current is not None and (not _is_number(value) or value > current)
            if raised:
                where = self.origins.get(path, "the default")
                what = "turn this off" if isinstance(current, bool) else "lower this limit"
                self.notices.append(f"{layer.name}: ignored {dotted} = {value!r}: a repository's config may only "
                                    f"{what} ({where}: {current!r})")
                return False
        return True


def _default_for(path: Leaf) -> Any:
    """The default of the field at `path` (`*` steps through a dict of models), or None (no limit)."""
    model: type[BaseModel] | None = Config
    for i, key in enumerate(path):
        if model is None:
            return None
        if model is Config and key == "models":
            model = ModelOptions
            continue
        if model is ModelOptions and i == 1:
            continue  # the model's name
        info = model.model_fields.get(key)
        if info is None:
            return None
        if i == len(path) - 1:
            return info.get_default(call_default_factory=True)
        annotation = info.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format_validation(exc: ValidationError, source: str | Mapping[Leaf, str]) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if not isinstance(source, str):
        path = tuple(str(p) for p in err["loc"])
        source = next((source[p] for p in (path[:i] for i in range(len(path), 0, -1)) if p in source), None) or next(
            (name for leaf, name in source.items() if leaf[: len(path)] == path), "config"
        )
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key {loc!r}: remove it or check its spelling (see `relay config show`)"
    if kind == "missing":
        return f"{source}: missing key {loc!r}: add it"
    msg = err["msg"].removeprefix("Value error, ")
    if err["loc"]:
        return f"{source}: key {loc!r}: {msg}"
    return f"{source}: {msg}"


def _check_semantics(config: Config, source: str) -> Config:
    for name in config.endpoints:
        if name in PROVIDERS:
            raise ConfigError(
                f"{source}: endpoints.{name}: {name!r} is a built-in provider and cannot be redefined as an "
                "endpoint (its requests carry that provider's API key); name the endpoint differently"
            )
    try:
        for spec in config.all_models():
            check_model(spec, config.endpoints)
        check_diversity(config)
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


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
    return _check_semantics(config, source)


def parse_toml(raw: bytes, path: Path) -> dict[str, Any]:
    """TOML bytes as a dict; ConfigError naming `path` for anything that is not a usable config."""
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (RecursionError, MemoryError):
        raise ConfigError(f"{path}: nested too deeply to be a config") from None


def read_toml(path: Path, *, repository: bool = False) -> dict[str, Any]:
    """A TOML file as a dict. `repository=True`: read as untrusted input (no links, regular file only)."""
    if repository:
        from relaycode.trust import read_repo_file

        return parse_toml(read_repo_file(path), path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_toml(raw, path)


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "relay" / "config.toml"


def repo_config_path(repo: Path | None) -> Path | None:
    """The repository's `relay.toml`, if it has one (a symlink counts: it is refused when read)."""
    if repo is None:
        return None
    path = repo / "relay.toml"
    return path if os.path.lexists(path) else None


def find_config_file(repo: Path | None) -> Path | None:
    """`relay.toml` in the repository, else the user's config file, else None (the most specific one)."""
    found = repo_config_path(repo)
    if found is not None:
        return found
    user = user_config_path()
    return user if user.is_file() else None


def config_layers(
    *, config_file: Path | None = None, preset: str | None = None, repo: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[str, list[ConfigLayer], list[str]]:
    """The preset, the layers over it (lowest first: user config < repository relay.toml (within the
    trust rules) < `--config FILE` < command line) and notices about what was ignored."""
    from relaycode import trust
    from relaycode.presets import PRESETS

    layers: list[ConfigLayer] = []
    notices: list[str] = []
    user = user_config_path()
    if user.is_file():
        layers.append(ConfigLayer(str(user), read_toml(user)))
    repo_file = repo_config_path(repo)
    if repo_file is not None:
        raw = trust.read_repo_file(repo_file)  # one read: the bytes checked are the bytes parsed
        layers.append(ConfigLayer(f"{repo_file} (repository)", parse_toml(raw, repo_file),
                                  trusted=trust.is_trusted(repo_file, raw)))
    if config_file is not None:
        layers.append(ConfigLayer(str(config_file), read_toml(config_file)))
    if overrides:
        layers.append(ConfigLayer("command line", dict(overrides)))

    # The preset decides where requests, code and keys go: the user's choice (command line, --config,
    # user config) wins over an untrusted repository's, which applies only when the user named none.
    named = [(layer.name, layer.data["preset"]) for layer in layers if "preset" in layer.data]
    trusted_named = [(layer.name, layer.data["preset"]) for layer in layers if "preset" in layer.data and layer.trusted]
    chosen: str | None = preset
    where = "--preset"
    if chosen is None and named:
        where, chosen = (trusted_named or named)[-1]
    for layer in layers:
        if not layer.trusted and "preset" in layer.data and (preset is not None or trusted_named) \
                and layer.data["preset"] != chosen:
            notices.append(f"{layer.name}: ignored preset = {layer.data['preset']!r}: you chose "
                           f"{chosen!r} ({where}); a repository's config does not override your preset")
    if chosen is not None and chosen not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {chosen!r}; known: {', '.join(PRESETS)}")
    if chosen is None:
        # Nothing names a preset: the offline `local` preset is the base, unless the layers name an
        # implementer themselves (a complete config stands alone, as it always has).
        defines_implementer = any(
            isinstance(layer.data.get("stages"), Mapping)
            and isinstance(layer.data["stages"].get("implement"), Mapping)
            and "model" in layer.data["stages"]["implement"]
            for layer in layers
        )
        chosen = None if defines_implementer else "local"
    return chosen or "", layers, notices


def load_config(
    *, config_file: Path | None = None, preset: str | None = None, repo: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve the config key by key: built-in defaults < preset < user config < repository relay.toml
    (what the trust rules allow) < `--config FILE` < command line (`--preset` picks the preset).

    The result's `origins` say which layer set each key; `notices` list what was ignored and why.
    """
    from relaycode.presets import PRESETS

    chosen, layers, notices = config_layers(config_file=config_file, preset=preset, repo=repo, overrides=overrides)
    merged = _Layered(notices=notices)
    if chosen:
        merged.apply(ConfigLayer(f"preset {chosen}", PRESETS[chosen]))
    for layer in layers:
        merged.apply(layer)
    data = _unflatten(merged.leaves)
    names = ([f"preset {chosen}"] if chosen else []) + [layer.name for layer in layers]
    source = " < ".join(names) or "<defaults>"
    try:
        config = Config.model_validate({**data, "preset": chosen or None, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, merged.origins)) from None
    config = _check_semantics(config, source)
    config.origins = {".".join(k): v for k, v in merged.origins.items()}
    config.notices = list(merged.notices)
    return config
