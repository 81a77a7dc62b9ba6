"""Whether the local models a config uses can run: checked before a run creates anything.

A missing runtime or model file would otherwise be found at the first request, after the run's
branch, worktree and baseline tests exist. One error names everything missing and the one command
that installs it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from relaycode.local import LocalModelError, UsageError

if TYPE_CHECKING:
    from relaycode.config import Config


class LocalNotInstalled(LocalModelError, UsageError):
    """The config needs local models (or their runtime) that are not installed (exit 2)."""


def local_models(config: Config, *, skip: Collection[str] = ()) -> list[str]:
    """Catalog names of the local models `config` uses (`local:NAME` specs), in stage order."""
    from relaycode.providers import parse_model

    names: list[str] = []
    for spec in config.all_models():
        if spec in skip:
            continue
        ref = parse_model(spec, config.endpoints)
        if ref.is_local and ref.name not in names:
            names.append(ref.name)
    return names


def require_installed(config: Config, *, skip: Collection[str] = ()) -> None:
    """Raise `LocalNotInstalled` naming what is missing and the `relay local setup` command that fixes it.

    `skip`: model specs served by something else (test doubles), which need nothing installed.
    """
    from relaycode.local.catalog import get
    from relaycode.local.runtime import runtime_status
    from relaycode.local.weights import model_status

    names = local_models(config, skip=skip)
    if not names:
        return
    missing = [name for name in names if not model_status(get(name)).verified]
    runtime = not runtime_status().present
    if not missing and not runtime:
        return
    what = (["the local runtime (llama-server)"] if runtime else []) + [f"local model {name}" for name in missing]
    preset = config.preset
    if preset is not None and _preset_models(preset) == names:
        fix = f"relay local setup --preset {preset}"
    else:
        fix = f"relay local setup --models {','.join(missing or names)}"
    raise LocalNotInstalled(f"{' and '.join(what)} {'is' if len(what) == 1 else 'are'} not installed: run `{fix}`")


def _preset_models(preset: str) -> list[str]:
    from relaycode.config import load_config

    return local_models(load_config(preset=preset))
