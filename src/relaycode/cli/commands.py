"""Registers every command group on the root app. Order here is the order in `relay --help`."""

from __future__ import annotations

import importlib
import pkgutil

import relaycode.cli as _cli

# Command modules are named `*_cmd.py`; each registers itself on `relaycode.cli.app`.
for _info in sorted(pkgutil.iter_modules(_cli.__path__), key=lambda m: m.name):
    if _info.name.endswith("_cmd"):
        importlib.import_module(f"relaycode.cli.{_info.name}")
