"""`relay local ...`: install, inspect, start and stop the embedded local models.

Only typer and the standard library at top level; the local package is
imported inside each command so `relay --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from relaycode.cli import app
from relaycode.cli._common import die

local_app = typer.Typer(
    name="local",
    help="Local models (no API key): set up, show status, start and stop their servers.",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")


def _resolve_models(preset: str | None, models: str | None) -> list[str]:
    """Model names from `--preset` and/or `--models a,b`; all catalog models when neither is given."""
    from relaycode.config import load_config
    from relaycode.errors import ConfigError, UsageError
    from relaycode.local import catalog
    from relaycode.local.readiness import local_models

    names: list[str] = []
    if preset is not None:
        try:
            preset_models = local_models(load_config(preset=preset))
        except ConfigError as exc:
            raise die(UsageError(f"--preset: {exc}")) from None
        if not preset_models:
            raise die(UsageError(f"--preset {preset}: uses no local model; nothing to set up"))
        names += preset_models
    if models:
        names += [n.strip() for n in models.split(",") if n.strip()]
    if preset is None and not models:
        names = list(catalog.CATALOG)
    for name in names:
        catalog.get(name)  # unknown names fail before anything is downloaded
    return list(dict.fromkeys(names))


@local_app.command("setup")
def setup(
    preset: Annotated[
        str | None, typer.Option("--preset", help="Install the models this preset uses (e.g. local).")
    ] = None,
    models: Annotated[
        str | None, typer.Option("--models", help="Comma-separated model names (default: all).")
    ] = None,
    llama_server: Annotated[
        Path | None,
        typer.Option("--llama-server", help="Use this existing llama-server binary instead of building one."),
    ] = None,
) -> None:
    """Install the llama-server runtime and the models. Idempotent; an interrupted setup resumes."""
    from relaycode.errors import RelayError
    from relaycode.local import console_progress
    from relaycode.local.catalog import get
    from relaycode.local.runtime import ensure_runtime, install_runtime_binary
    from relaycode.local.weights import ensure_model

    try:
        names = _resolve_models(preset, models)
        progress = console_progress()
        if llama_server is not None:
            runtime = install_runtime_binary(llama_server, source=f"installed from {llama_server}")
        else:
            runtime = ensure_runtime(progress=progress)
        typer.echo(f"runtime: {runtime}")
        for name in names:
            path = ensure_model(get(name), progress=progress)
            typer.echo(f"{name}: {path}")
    except RelayError as exc:
        raise die(exc) from None


def _status_data(full_verify: bool) -> dict[str, Any]:
    from relaycode.local.catalog import CATALOG
    from relaycode.local.runtime import runtime_status
    from relaycode.local.server import process_rss, running_servers
    from relaycode.local.weights import model_status

    rt = runtime_status()
    models = []
    for model in CATALOG.values():
        st = model_status(model, full_verify=full_verify)
        models.append(
            {
                "name": st.name,
                "title": st.title,
                "present": st.present,
                "verified": st.verified,
                "size": st.size,
                "expected_size": st.expected_size,
                "sha256": st.sha256,
                "path": str(st.path),
                "cached_wheels": st.cached_wheels,
            }
        )
    servers = [
        {
            "model": h.model,
            "base_url": h.base_url,
            "port": h.port,
            "pid": h.pid,
            "rss": process_rss(h.pid),
            "started_by": h.started_by,
            "users": list(h.users),
            "log": h.log_path,
        }
        for h in running_servers()
    ]
    runtime = {"present": rt.present, "path": str(rt.path), "version": rt.version, "source": rt.source}
    return {"runtime": runtime, "models": models, "servers": servers}


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.0f} MB"


@local_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash every model file (slow).")] = False,
) -> None:
    """Show the runtime, each model (present, verified, size, path) and running servers."""
    data = _status_data(verify)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    rt = data["runtime"]
    typer.echo(f"runtime  {'present' if rt['present'] else 'missing'}  {rt['path']}  {rt['version']}")
    for m in data["models"]:
        state = "verified" if m["verified"] else "UNVERIFIED" if m["present"] else "missing"
        extra = f"  ({m['cached_wheels']} wheels downloaded)" if m["cached_wheels"] else ""
        typer.echo(
            f"{m['name']:<20} {state:<10} {_mb(m['size'] or m['expected_size']):>9}  {m['path']}{extra}"
        )
    if not data["servers"]:
        typer.echo("servers  none running")
    for s in data["servers"]:
        typer.echo(
            f"server   {s['model']:<20} port {s['port']}  pid {s['pid']}  RSS {_mb(s['rss'])}  "
            f"started by {s['started_by']}  {s['base_url']}"
        )


@local_app.command("start")
def start(
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to serve (default: those of the local preset).")
    ] = None,
) -> None:
    """Start servers that keep running after relay exits, until `relay local stop`."""
    from relaycode.errors import RelayError
    from relaycode.local.catalog import LOCAL_PRESET_MODELS
    from relaycode.local.server import ensure_server

    try:
        for name in models or LOCAL_PRESET_MODELS:
            handle = ensure_server(name, persistent=True)
            typer.echo(f"{name}: {handle.base_url} (pid {handle.pid})")
    except RelayError as exc:
        raise die(exc) from None


@local_app.command("stop")
def stop(
    models: Annotated[list[str] | None, typer.Argument(help="Models to stop (default: all running).")] = None,
) -> None:
    """Stop local servers, whoever started them."""
    from relaycode.errors import RelayError
    from relaycode.local.catalog import get
    from relaycode.local.server import running_servers, stop_server

    try:
        names = models or [h.model for h in running_servers()]
        for name in names:
            get(name)
            typer.echo(f"{name}: {'stopped' if stop_server(name) else 'not running'}")
    except RelayError as exc:
        raise die(exc) from None
