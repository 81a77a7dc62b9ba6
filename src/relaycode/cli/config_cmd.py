"""`relay config show|check` and `relay models`."""

from __future__ import annotations

from pathlib import Path

import typer

from relaycode.cli import app
from relaycode.cli._common import (
    ConfigOpt,
    JsonOpt,
    PresetOpt,
    RepoOpt,
    load_config_or_exit,
    print_json,
    print_warning,
)

config_app = typer.Typer(help="Show or check the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    config: Path | None = ConfigOpt,
    preset: str | None = PresetOpt,
    repo: Path = RepoOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print the resolved config (stage → models, budget, limits)."""
    cfg = load_config_or_exit(config, preset, repo)
    data = cfg.public_dict()
    if as_json:
        print_json({**data, "origins": cfg.origins})
        return

    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from relaycode.termconsole import TerminalConsole

    # Values come from every config layer, a repository's relay.toml included: cells are plain Text,
    # never read as rich markup (a value could otherwise restyle or hide what is shown beside it).
    def row(table: Table, *cells: object) -> None:
        table.add_row(*(Text(str(cell)) for cell in cells))

    console = TerminalConsole()
    console.print(f"[bold]config[/bold] from {escape(cfg.source)}  diversity={escape(str(cfg.diversity))}  "
                  f"unpriced={escape(str(cfg.unpriced))}")
    table = Table("stage", "models", "settings")
    st = cfg.stages
    row(table, "plan", st.plan.model or "(no planning)", f"approve={st.plan.approve}")
    impl = st.implement.model + "".join(f" → {m}" for m in st.implement.escalate_to)
    row(table, "implement", impl, f"escalate_after={st.implement.escalate_after} max_steps={st.implement.max_steps}")
    row(table, "review", ", ".join(st.review.models) or "(no review)", f"block_on={st.review.block_on}")
    row(table, "verify", "; ".join(st.verify.commands) if st.verify.commands else "(auto-detect)",
        f"timeout_s={st.verify.timeout_s}")
    console.print(table)
    console.print(Text(f"budget: {data['budget']}  max_iterations={cfg.max_iterations}"))
    if cfg.origins:
        layers = Table("key", "value", "from", title="where each setting came from")
        flat = _flat(data)
        for key in sorted(cfg.origins):
            if key in flat:
                row(layers, key, flat[key], cfg.origins[key])
        console.print(layers)


def _flat(data: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@config_app.command("check")
def check(
    config: Path | None = ConfigOpt,
    preset: str | None = PresetOpt,
    repo: Path = RepoOpt,
) -> None:
    """Validate the config: exit 0 if usable (missing API keys are warnings), 2 with the error otherwise."""
    from relaycode.errors import ConfigError
    from relaycode.models import missing_keys
    from relaycode.pricing import require_prices

    cfg = load_config_or_exit(config, preset, repo)
    try:
        require_prices(cfg)
    except ConfigError as exc:
        from relaycode.cli._common import die

        raise die(exc) from None
    for missing in missing_keys(cfg):
        print_warning(str(missing))
    typer.echo(f"ok: {cfg.source} ({len(cfg.all_models())} models)")


@app.command("models")
def models(
    config: Path | None = ConfigOpt,
    preset: str | None = PresetOpt,
    repo: Path = RepoOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List known models: the presets' and your config's, with prices per million tokens and their source."""
    from relaycode.config import load_config
    from relaycode.models import ModelRegistry
    from relaycode.presets import PRESETS
    from relaycode.pricing import quote_of

    cfg = load_config_or_exit(config, preset, repo)
    names: list[str] = []
    for name in PRESETS:
        for spec in load_config(preset=name).all_models():
            if spec not in names:
                names.append(spec)
    for spec in cfg.all_models():
        if spec not in names:
            names.append(spec)
    registry = ModelRegistry(cfg)
    rows = []
    for spec in names:
        model = registry.get(spec)
        q = quote_of(model)
        rows.append({
            "model": spec,
            "vendor": model.vendor,
            "input_per_mtok": None if q is None else float(q.input_per_mtok),
            "output_per_mtok": None if q is None else float(q.output_per_mtok),
            "price_source": None if q is None else q.source,
            "context_tokens": model.profile.context_tokens,
        })
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    from relaycode.termconsole import TerminalConsole

    table = Table("model", "vendor", "$/M in", "$/M out", "price from", "context")
    table.columns[0].no_wrap = True
    for r in rows:
        price_in = "unknown" if r["input_per_mtok"] is None else f"{r['input_per_mtok']:.2f}"
        price_out = "unknown" if r["output_per_mtok"] is None else f"{r['output_per_mtok']:.2f}"
        table.add_row(str(r["model"]), str(r["vendor"]), price_in, price_out, str(r["price_source"] or "-"),
                      str(r["context_tokens"]))
    TerminalConsole().print(table)
