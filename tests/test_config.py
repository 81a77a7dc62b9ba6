from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaycode.cli import _register, app
from relaycode.config import load_config
from relaycode.errors import ConfigError
from relaycode.presets import PRESETS

_register()
runner = CliRunner()

ISSUE_EXAMPLE = """
[stages.plan]
model = "anthropic:claude-opus-4-5"
[stages.implement]
model = "google:gemini-2.5-flash"
escalate_to = ["anthropic:claude-sonnet-4-5"]
[stages.review]
models = ["openai:gpt-5-mini", "openrouter:z-ai/glm-4.6"]
[stages.verify]
commands = ["python -m pytest -q"]
[budget]
run_usd = 2.00
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return path


def test_issue_example_loads(tmp_path: Path) -> None:
    cfg = load_config(config_file=write(tmp_path, ISSUE_EXAMPLE))
    assert cfg.stages.plan.model == "anthropic:claude-opus-4-5"
    assert cfg.stages.implement.escalate_to == ["anthropic:claude-sonnet-4-5"]
    assert cfg.stages.review.models == ["openai:gpt-5-mini", "openrouter:z-ai/glm-4.6"]
    assert cfg.stages.verify.commands == ["python -m pytest -q"]
    assert cfg.budget.run_usd == 2.0


def test_show_json_has_the_config_shape(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "show", "--json", "--config", str(write(tmp_path, ISSUE_EXAMPLE))])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stages"]["plan"]["model"] == "anthropic:claude-opus-4-5"
    assert data["stages"]["implement"]["model"] == "google:gemini-2.5-flash"
    assert data["stages"]["review"]["models"] == ["openai:gpt-5-mini", "openrouter:z-ai/glm-4.6"]
    assert data["stages"]["verify"]["commands"] == ["python -m pytest -q"]
    assert data["budget"]["run_usd"] == 2.0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_valid(preset: str) -> None:
    cfg = load_config(preset=preset)
    assert cfg.stages.implement.model


def test_check_api_preset_exits_0_and_warns_about_keys() -> None:
    result = runner.invoke(app, ["config", "check", "--preset", "api"])
    assert result.exit_code == 0, result.output
    assert "ANTHROPIC_API_KEY" in result.stderr


def test_reviewer_equal_to_implementer_exits_2_naming_both(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[stages.implement]\nmodel = "openai:gpt-5-mini"\n[stages.review]\nmodels = ["openai:gpt-5-mini"]\n')
    result = runner.invoke(app, ["config", "check", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "stages.review" in result.stderr and "stages.implement" in result.stderr
    assert "openai:gpt-5-mini" in result.stderr
    assert "Traceback" not in result.output


def test_same_vendor_reviewer_rejected_by_default_allowed_with_model_diversity(tmp_path: Path) -> None:
    body = '[stages.implement]\nmodel = "anthropic:claude-sonnet-4-5"\n[stages.review]\nmodels = ["openrouter:anthropic/claude-haiku-4.5"]\n'
    with pytest.raises(ConfigError, match="vendor 'anthropic'"):
        load_config(config_file=write(tmp_path, body))
    cfg = load_config(config_file=write(tmp_path, 'diversity = "model"\n' + body))
    assert cfg.diversity == "model"


def test_escalation_target_counts_as_implementer(tmp_path: Path) -> None:
    body = ('[stages.implement]\nmodel = "google:gemini-2.5-flash"\nescalate_to = ["openai:gpt-5"]\n'
            '[stages.review]\nmodels = ["openai:gpt-5-mini"]\n')
    with pytest.raises(ConfigError, match="openai:gpt-5"):
        load_config(config_file=write(tmp_path, body))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[stages.implement]\nmodel = "nosuch:x"\n', "unknown provider 'nosuch'"),
        ('[stages.implement]\nmodel = "openai:gpt-5"\ncolour = 1\n', "unknown key 'stages.implement.colour'"),
        ('[stages.implement]\nmodel = "openai:gpt-5"\n[budget]\nrun_usd = "lots"\n', "budget.run_usd"),
        ('[stages.implement]\nmodel = "local:nope"\n', "unknown local model"),
        ('[stages.implement]\nmodel = "gpt-5"\n', "expected 'provider:model'"),
        ("[stages\n", "not valid TOML"),
        ('preset = "nope"\n', "unknown preset"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path, body: str, needle: str) -> None:
    path = write(tmp_path, body)
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert needle in err
    assert str(path) in err or "preset" in needle
    assert len(err.splitlines()) == 1, err


def test_openai_compatible_endpoint_models(tmp_path: Path) -> None:
    body = (
        '[endpoints.vllm]\nbase_url = "http://127.0.0.1:8000/v1"\nvendor = "qwen"\n'
        '[stages.implement]\nmodel = "vllm:qwen-coder"\n[stages.review]\nmodels = ["openai:gpt-5-mini"]\n'
        '[models."vllm:qwen-coder".price]\ninput_per_mtok = 0\noutput_per_mtok = 0\n'
    )
    cfg = load_config(config_file=write(tmp_path, body))
    from relaycode.models import resolve

    model = resolve("vllm:qwen-coder", cfg)
    assert cfg.vendor_of("vllm:qwen-coder") == model.vendor == "qwen"
    assert model.profile.output_mode == "prompted" and model.endpoint is not None and model.prices_id is None


def test_unpriced_model_refused_unless_allowed(tmp_path: Path) -> None:
    body = '[endpoints.box]\nbase_url = "http://127.0.0.1:9/v1"\n[stages.implement]\nmodel = "box:m"\n'
    result = runner.invoke(app, ["config", "check", "--config", str(write(tmp_path, body))])
    assert result.exit_code == 2 and "no known price" in result.stderr
    result = runner.invoke(app, ["config", "check", "--config", str(write(tmp_path, 'unpriced = "allow"\n' + body))])
    assert result.exit_code == 0, result.output


def test_repo_relay_toml_is_found(tmp_path: Path) -> None:
    write(tmp_path, '[stages.implement]\nmodel = "openai:gpt-5"\n')
    assert load_config(repo=tmp_path).stages.implement.model == "openai:gpt-5"


def test_no_config_means_local_preset(tmp_path: Path) -> None:
    assert load_config(repo=tmp_path).preset == "local"


def test_models_json_lists_preset_models_with_prices() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in json.loads(result.stdout)}
    for preset in PRESETS:
        for spec in load_config(preset=preset).all_models():
            assert rows[spec]["input_per_mtok"] is not None
            assert rows[spec]["price_source"] in {"genai-prices", "local"}
    assert rows["anthropic:claude-opus-4-5"]["output_per_mtok"] == 25.0
    assert rows["local:qwen2.5-coder-1.5b"]["price_source"] == "local"


def test_the_demo_is_seeded_and_sampled_whatever_its_preset() -> None:
    from relaycode.config import load_config
    from relaycode.presets import DEMO_SAMPLES, DEMO_SEED, demo_config

    demo = demo_config(load_config(preset="local"))
    assert demo.seed == DEMO_SEED and demo.stages.implement.samples == DEMO_SAMPLES
    assert demo.stages.implement.model == load_config(preset="local").stages.implement.model
    seeded = load_config(preset="local").model_copy(update={"seed": 5})
    assert demo_config(seeded).seed == 5  # a seed the user set wins


def test_the_measured_sampled_design_and_its_preset_are_the_same_config() -> None:
    # docs/benchmarks.md measures benchmarks/configs/local-1.5b-sampled.toml; the preset users pick must be that design.
    root = Path(__file__).resolve().parent.parent
    measured = load_config(config_file=root / "benchmarks" / "configs" / "local-1.5b-sampled.toml")
    preset = load_config(preset="local-1.5b-sampled")
    # (block_on and judge differ, and mean nothing without reviewers)
    for stage in ("plan", "implement", "verify"):
        assert getattr(measured.stages, stage) == getattr(preset.stages, stage)
    assert measured.stages.review.models == preset.stages.review.models and measured.models == preset.models
    assert preset.stages.implement.samples == 3 and preset.stages.review.models == []
    assert preset.stages.plan.model is None
