"""`relay review` (review any change) and `relay review-eval` (measure reviewers on labelled bugs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from relaycode.cli import app
from relaycode.cli._common import (
    ConfigOpt,
    PresetOpt,
    RepoOpt,
    die,
    load_config_or_exit,
    print_error,
    print_warning,
)

if TYPE_CHECKING:
    from relaycode.config import Config
    from relaycode.review.core import ReviewResult
    from relaycode.review.evidence import EvidenceChecker
    from relaycode.review.judge import JudgeSetting
    from relaycode.workspace import Repo

ReviewersOpt = typer.Option(
    None, "--reviewers", help="Comma-separated reviewer models, e.g. local:qwen2.5-coder-0.5b,openai:gpt-5-mini. "
    "Default: stages.review.models of the config."
)


MinScoreOpt = typer.Option(
    None, "--min-score", min=0.0, max=1.0,
    help="Drop merged findings whose score (reviewers' measured weights and evidence) is below this (default 0.25).",
)
WeightsOpt = typer.Option(
    None, "--weights", help="JSON file of reviewer weights by model and evidence status, over relay's built-in ones.",
)

FollowupOpt = typer.Option(
    False, "--evidence-followup", help="With --evidence: ask each reviewer once more per finding it left without "
    "evidence, for a call and its expected value (one more request per finding, at most 3 per file).",
)

SamplesOpt = typer.Option(
    None, "--samples", min=1, max=9, help="Answers asked of each reviewer per chunk; above 1 a finding counts only "
    "when most of a reviewer's answers raise it (self-consistency; default: stages.review.samples).",
)


JudgeOpt = typer.Option(
    None, "--judge", help="Second opinion on each merged finding by a model that did not raise it: 'reviewers' "
    "(another reviewer of this review), a model (provider:name) or 'none'. A finding judged not a bug scores 0: "
    "dropped below --min-score when findings are weighted, else kept and marked.",
)


def resolve_judge(cfg: Config, option: str | None, *, default: str | None = None) -> JudgeSetting:
    """The judge from --judge, else `default` (review: the config's `stages.review.judge`); a named model
    must be known, installed (local) and have its key set, like a reviewer."""
    from relaycode.errors import RelayError
    from relaycode.review.judge import JudgeSetting

    try:
        setting = JudgeSetting.parse(option if option is not None else default)
    except RelayError as exc:
        raise die(exc) from None
    if setting.model is not None:
        resolve_reviewers(cfg, setting.model)
    return setting


def _usage(message: str) -> typer.Exit:
    from relaycode.errors import UsageError

    return die(UsageError(message))


def resolve_reviewers(cfg: Config, option: str | None) -> list[str]:
    """Reviewer specs from --reviewers or the config; each must name a known model, and its key must be set."""
    from relaycode.config import PlanStage
    from relaycode.errors import ConfigError, RelayError
    from relaycode.local.readiness import require_installed
    from relaycode.models import missing_keys, resolve

    specs = [s.strip() for s in option.split(",") if s.strip()] if option else list(cfg.stages.review.models)
    if not specs:
        raise _usage("no reviewers: pass --reviewers MODEL[,MODEL...] or set stages.review.models in the config")
    specs = list(dict.fromkeys(specs))
    try:
        for spec in specs:
            resolve(spec, cfg)
    except ConfigError as exc:
        raise die(exc) from None
    # missing_keys checks a config's models; ask it about a copy whose only models are the reviewers.
    stages = cfg.stages.model_copy(update={
        "plan": PlanStage(),
        "implement": cfg.stages.implement.model_copy(update={"model": specs[0], "escalate_to": []}),
        "review": cfg.stages.review.model_copy(update={"models": specs}),
    })
    reviewers_only = cfg.model_copy(update={"stages": stages})
    missing = missing_keys(reviewers_only)
    if missing:
        raise die(missing[0])
    try:
        require_installed(reviewers_only)
    except RelayError as exc:
        raise die(exc) from None
    return specs


def _git_show(repo_root: Path, rev: str) -> Callable[[str], str | None]:
    from relaycode.workspace import open_repo

    repo = open_repo(repo_root)

    def read(path: str) -> str | None:
        proc = repo.git("show", f"{rev}:{path}", check=False)
        return proc.stdout if proc.returncode == 0 else None

    return read


def collect_diff(
    repo_root: Path, *, base: str | None, head: str | None, staged: bool, diff_file: str | None
) -> tuple[str, Callable[[str], str | None] | None, str]:
    """(diff text, reader of new-side files, description) for the chosen source of the change."""
    from relaycode.workspace import open_repo

    if diff_file is not None:
        text = sys.stdin.read() if diff_file == "-" else _read_file(Path(diff_file))
        reader = None
        if repo_root.is_dir():
            from relaycode.review.core import disk_reader

            # Used only where the file matches the diff's new side, and only for files git tracks or
            # would add: a stranger's patch naming an ignored file must not pull it into the prompt.
            reader = disk_reader(repo_root, visible=_not_ignored(repo_root))
        return text, reader, "stdin" if diff_file == "-" else diff_file
    repo = open_repo(repo_root)
    flags = ("--no-color", "--no-ext-diff", "--no-textconv", "-M")
    if staged:
        return repo.git("diff", "--cached", *flags, "HEAD").stdout, _git_show(repo.root, ""), "staged changes"
    if base is not None:
        base_sha = repo.resolve(base)
        head_sha = repo.resolve(head or "HEAD")
        text = repo.git("diff", *flags, f"{base_sha}...{head_sha}").stdout
        return text, _git_show(repo.root, head_sha), f"{base}...{head or 'HEAD'}"
    from relaycode.review.core import disk_reader

    return working_tree_diff(repo), disk_reader(repo.root), "working tree vs HEAD"


def _not_ignored(root: Path) -> frozenset[str]:
    """Files git tracks or would add in `root` (empty outside a git checkout: nothing is read)."""
    from relaycode.errors import RelayError
    from relaycode.workspace import open_repo

    try:
        repo = open_repo(root)
    except RelayError:
        return frozenset()
    listed = repo.git("ls-files", "--cached", "--others", "--exclude-standard", "-z").stdout.split("\0")
    prefix = os.path.relpath(root.resolve(), repo.root)
    return frozenset(p if prefix == "." else os.path.relpath(p, prefix) for p in listed if p)


def working_tree_diff(repo: Repo) -> str:
    """Everything not committed yet: tracked changes (staged or not) and untracked, not ignored, files.

    Uses the real index read-only: git's racy-entry check needs the index's own mtime, which a
    copied index would lose (a same-size edit in the same second as the commit would then be missed).
    """
    parts = [repo.git("diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M", "HEAD").stdout]
    untracked = repo.git("ls-files", "--others", "--exclude-standard", "-z").stdout.split("\0")
    for path in sorted(p for p in untracked if p):
        # --no-index exits 1 when the files differ, which they always do here.
        parts.append(repo.git("diff", "--no-color", "--no-ext-diff", "--no-textconv", "--no-index", "--", "/dev/null", path,
                              check=False).stdout)
    return "".join(parts)


def _read_file(path: Path) -> str:
    from relaycode.errors import UsageError

    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the diff: {exc.strerror or exc}") from None


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")


@app.command("review")
def review(
    base: str | None = typer.Option(None, "--base", help="Review the commits on HEAD (or --head) since it left REF: `git diff REF...HEAD`."),
    head: str | None = typer.Option(None, "--head", help="With --base: the tip to review instead of HEAD."),
    staged: bool = typer.Option(False, "--staged", help="Review the staged changes (index vs HEAD)."),
    diff_file: str | None = typer.Option(None, "--diff", help="Review a unified diff from FILE, or - for stdin."),
    pr: str | None = typer.Option(None, "--pr", help="Review GitHub pull request OWNER/REPO#N and post one review (GITHUB_TOKEN)."),
    post: bool = typer.Option(True, "--post/--no-post", help="With --pr: post the review to the pull request."),
    reviewers: str | None = ReviewersOpt,
    config: Path | None = ConfigOpt,
    preset: str | None = PresetOpt,
    repo: Path = RepoOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text, md, json or sarif."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report to FILE instead of stdout."),
    min_agree: int | None = typer.Option(None, "--min-agree", help="Keep findings raised by at least K reviewers (default: stages.review.min_agree)."),
    fail_on: str | None = typer.Option(None, "--fail-on", help="Exit 1 if a finding is at or above SEVERITY (blocker, major, minor, nit)."),
    allow_unreviewed: bool = typer.Option(False, "--allow-unreviewed", help="Exit 0 (with a warning) when every "
                                          "reviewer failed or no part of the change could be reviewed."),
    evidence: bool = typer.Option(False, "--evidence", help="Ask reviewers for evidence and run it in the sandbox on "
                                  "scratch copies of the changed and base trees: findings become confirmed, refuted or unchecked."),
    min_score: float | None = MinScoreOpt,
    weights: Path | None = WeightsOpt,
    followup: bool = FollowupOpt,
    judge: str | None = JudgeOpt,
    samples: int | None = SamplesOpt,
    fail_confirmed_only: bool = typer.Option(False, "--fail-on-confirmed-only", help="With --fail-on: count only "
                                             "confirmed findings (needs --evidence)."),
) -> None:
    """Review a change with several models; default: the working tree (untracked files included) vs HEAD.

    Exit 0 when no finding is at or above --fail-on (or it is not given), 1 when one is, when every
    reviewer failed or when nothing in the change could be reviewed (unless --allow-unreviewed),
    2 for usage and config errors (input that is not a diff included).
    """
    import asyncio

    from relaycode.cli._render import waiting
    from relaycode.config import SEVERITIES
    from relaycode.errors import RelayError, UsageError
    from relaycode.review.core import review_diff
    from relaycode.review.diff import parse_diff
    from relaycode.review.formats import FORMATS, render
    from relaycode.review.weights import DEFAULT_MIN_SCORE, load_weights
    from relaycode.session import ModelSession
    from relaycode.termconsole import TerminalConsole

    sources = [diff_file is not None, pr is not None, staged, base is not None]
    if sum(sources) > 1:
        raise _usage("choose one of --diff, --pr, --staged and --base")
    if head is not None and base is None:
        raise _usage("--head needs --base")
    if fmt not in FORMATS:
        raise _usage(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fail_on is not None and fail_on not in SEVERITIES:
        raise _usage(f"--fail-on {fail_on!r}: choose one of {', '.join(SEVERITIES)}")
    if min_agree is not None and min_agree < 1:
        raise _usage("--min-agree must be at least 1")
    if fail_confirmed_only and not evidence:
        raise _usage("--fail-on-confirmed-only needs --evidence (without it no finding is confirmed)")
    if followup and not evidence:
        raise _usage("--evidence-followup needs --evidence")
    cfg = load_config_or_exit(config, preset, repo)
    specs = resolve_reviewers(cfg, reviewers)
    judging = resolve_judge(cfg, judge, default=cfg.stages.review.judge)
    agree = min_agree if min_agree is not None else cfg.stages.review.min_agree
    try:
        if pr is not None:
            from relaycode.review.github import GitHubClient, parse_pr_ref, review_payload

            ref = parse_pr_ref(pr)
            with GitHubClient() as client:
                pull = client.fetch_pr(ref)
            text, reader, what = pull.diff, None, f"pull request {ref}"
        else:
            text, reader, what = collect_diff(repo, base=base, head=head, staged=staged, diff_file=diff_file)
        if not text.strip():
            typer.echo(f"relay: nothing to review ({what} has no changes)", err=True)
        elif not parse_diff(text):
            # Reviewing it would find nothing and a --fail-on gate would pass on a file that is no change at all.
            raise UsageError(f"{what}: not a unified diff (no file header such as `diff --git` or `--- a/...`)")
        else:
            typer.echo(f"relay: reviewing {what} with {', '.join(specs)}", err=True)
        session = ModelSession(cfg, run_id="review")
        checker = _evidence_checker(cfg, repo, staged=staged, base=base, head=head) if evidence and (
            pr is None and diff_file is None) else None
        if evidence and checker is None:
            typer.echo("relay: warning: --evidence needs a git tree (not --diff or --pr): findings stay unchecked",
                       err=True)
        weighting = evidence or min_score is not None or weights is not None
        try:
            with waiting(TerminalConsole(stderr=True), f"reviewing with {', '.join(specs)}"):
                result = asyncio.run(review_diff(
                    session, text, reviewers=specs, min_agree=agree, read_source=reader, checker=checker,
                    weights=load_weights(weights) if weighting else None,
                    min_score=(DEFAULT_MIN_SCORE if min_score is None else min_score) if weighting else 0.0,
                    followup=followup, judge=judging,
                    samples=samples if samples is not None else cfg.stages.review.samples,
                ))
        finally:
            if checker is not None:
                checker.close()
        _write(render(result, fmt, color=output is None and sys.stdout.isatty()), output)
        if pr is not None and post:
            with GitHubClient() as client:
                answer = client.post_review(ref, review_payload(result, text, head_sha=pull.head_sha))
            typer.echo(f"relay: posted review {answer.get('html_url') or answer.get('id', '')}", err=True)
    except RelayError as exc:
        raise die(exc) from None
    _exit_for(result, fail_on, changed=bool(text.strip()), allow_unreviewed=allow_unreviewed,
              confirmed_only=fail_confirmed_only)


def _evidence_checker(cfg: Config, repo: Path, *, staged: bool, base: str | None,
                      head: str | None) -> EvidenceChecker | None:
    """The sandboxed evidence runner for a git source of the change; None (and a warning) without bwrap."""
    from relaycode.review.evidence import EVIDENCE_WALL_S, EvidenceChecker, repo_trees, sandbox_for
    from relaycode.sandbox import bwrap_available
    from relaycode.workspace import open_repo

    if not bwrap_available():
        typer.echo("relay: warning: --evidence needs bubblewrap (bwrap): findings stay unchecked", err=True)
        return None
    root = open_repo(repo).root
    changed, base_tree, base_paths = repo_trees(root, staged=staged, base=base, head=head)
    policy, limits, env = sandbox_for(cfg.sandbox, min(EVIDENCE_WALL_S, cfg.stages.verify.timeout_s))
    return EvidenceChecker(changed, base_tree, base_paths, policy, limits, env)


def _exit_for(result: ReviewResult, fail_on: str | None, *, changed: bool, allow_unreviewed: bool,
              confirmed_only: bool = False) -> None:
    """The review's exit: a gate never passes on a change nobody reviewed, unless the user says it may."""
    from relaycode.review.findings import gate_findings

    for spec, error in result.errors.items():
        print_warning(f"reviewer {spec} failed: {error}")  # a provider's or a model's words
    if result.failed:
        unreviewed = "every reviewer failed; the change was not reviewed"
    elif changed and result.total_usage()["requests"] == 0:
        unreviewed = "no part of the change could be reviewed (see `not reviewed` in the report)"
    else:
        unreviewed = ""
    if unreviewed and allow_unreviewed:
        print_warning(f"{unreviewed} (--allow-unreviewed)")
    elif unreviewed:
        print_error(f"{unreviewed}; pass --allow-unreviewed to accept that")
        raise typer.Exit(code=1)
    if fail_on is not None and gate_findings(result.findings, fail_on, confirmed_only=confirmed_only):
        raise typer.Exit(code=1)


@app.command("review-eval")
def review_eval(
    suite: Path = typer.Argument(..., help="A JSONL benchmark suite with bug_lines (e.g. quixbugs.jsonl)."),
    reviewers: str | None = ReviewersOpt,
    config: Path | None = ConfigOpt,
    preset: str | None = PresetOpt,
    repo: Path = RepoOpt,
    limit: int | None = typer.Option(None, "--limit", help="Only the first N cases."),
    out: Path = typer.Option(Path("review-eval"), "--out", help="Directory for review_eval.json and review_eval.md."),
    min_agree: int = typer.Option(1, "--min-agree", help="min_agree of the merged ensemble."),
    resume: bool = typer.Option(False, "--resume", help="Continue the evaluation saved in --out (same suite, "
                                "reviewers and --min-agree): cases it holds are not reviewed again."),
    force: bool = typer.Option(False, "--force", help="Replace an evaluation saved in --out."),
    executor: str = typer.Option("local", "--executor", help="Where cases are reviewed: local (in turn, in this "
                                 "process) or ray (a task per case; see docs/benchmarks.md)."),
    address: str | None = typer.Option(None, "--address", help="With --executor ray: a running cluster's address "
                                       "(default: start a local Ray instance for the run)."),
    evidence: bool = typer.Option(False, "--evidence", help="Ask reviewers for evidence, run it in the sandbox, "
                                  "and score findings by it (views all / kept / confirmed, strict score)."),
    min_score: float | None = MinScoreOpt,
    weights: Path | None = WeightsOpt,
    followup: bool = FollowupOpt,
    judge: str | None = JudgeOpt,
    samples: int = typer.Option(1, "--samples", min=1, max=9, help="Answers per reviewer and chunk; above 1, "
                                "each reviewer is scored by its vote and by its first answers alone (<model>@1)."),
) -> None:
    """Measure reviewers' recall, precision, false alarms, cost and time on labelled bug-fix cases."""
    import asyncio
    import os
    import time

    from relaycode.bench.executor import ExecutorSpec, executor_kind
    from relaycode.bench.runner import relay_commit
    from relaycode.errors import RelayError
    from relaycode.review.evaluate import (
        EvalRun,
        EvalSettings,
        evaluate,
        evidence_table,
        judge_table,
        load_suite,
        markdown_table,
        save,
    )
    from relaycode.review.weights import DEFAULT_MIN_SCORE, load_weights
    from relaycode.session import ModelSession

    if limit is not None and limit < 1:
        raise _usage("--limit must be at least 1")
    if min_agree < 1:
        raise _usage("--min-agree must be at least 1")
    if resume and force:
        raise _usage("--resume and --force exclude each other")
    if followup and not evidence:
        raise _usage("--evidence-followup needs --evidence")
    saved = out / "review_eval.json"
    if saved.exists() and not (resume or force):
        raise _usage(f"--out {out}: holds an earlier evaluation; pass --resume to continue it or --force to replace it")
    cfg = load_config_or_exit(config, preset, repo)
    specs = resolve_reviewers(cfg, reviewers)
    # What is measured is what the command line says: the config's judge does not apply here.
    judging = resolve_judge(cfg, judge)
    weighted = evidence or min_score is not None or weights is not None
    try:
        # Ray without an address: a local instance with this machine's CPUs, one case per CPU.
        spec = ExecutorSpec(kind=executor_kind(executor), jobs=os.cpu_count() or 1, address=address)
        settings = EvalSettings(
            cfg, min_agree=min_agree, evidence=evidence, weights=load_weights(weights) if weighted else None,
            min_score=(DEFAULT_MIN_SCORE if min_score is None else min_score) if weighted else 0.0,
            followup=followup, judge=judging, samples=samples,
        )
        identified = weighted or judging.mode != "none" or samples > 1
        if spec.kind == "ray" and identified:
            raise _usage("--evidence, --min-score, --weights, --judge and --samples run with --executor local only "
                         "(for now)")
        cases = load_suite(suite, limit)
        if not cases:
            raise _usage(f"{suite}: no bug-fix cases with bug_lines")
        commit = relay_commit()
        if resume and saved.exists():
            start = EvalRun.resume(saved, suite=suite.name, reviewers=specs, min_agree=min_agree, commit=commit,
                                   settings=settings.identity() if identified else None)
            typer.echo(f"resume: {start.cases_done} cases already reviewed in {saved}", err=True)
        else:
            start = EvalRun(list(specs), min_agree, suite.name, commit,
                            settings.identity() if identified else {})
        typer.echo(f"review-eval: {len(cases)} cases from {suite}, reviewers {', '.join(specs)}", err=True)
        t0 = time.perf_counter()

        def header(partial: EvalRun) -> str:
            commits = ", ".join(f"{c} ({n} cases)" for c, n in partial.commits().items())
            return (f"review-eval of {suite.name}: {partial.cases_done} of {len(cases)} cases, reviewers "
                    f"{', '.join(specs)}, min_agree {min_agree}, relay commit {commits or commit or 'unknown'}, "
                    f"{time.perf_counter() - t0:.0f}s in this invocation")

        if spec.kind == "ray":
            from relaycode.review.eval_ray import evaluate_on_ray

            run = evaluate_on_ray(spec, cfg, cases, start=start, progress=lambda m: typer.echo(m, err=True),
                                  checkpoint=lambda partial: save(partial, out, header=header(partial)))
        else:
            run = asyncio.run(evaluate(
                lambda: ModelSession(cfg, run_id="review-eval"), cases, reviewers=specs, settings=settings,
                progress=lambda m: typer.echo(m, err=True),
                checkpoint=lambda partial: save(partial, out, header=header(partial)),
                resume=start,
            ))
    except RelayError as exc:
        raise die(exc) from None
    json_path, md_path = save(run, out, header=header(run))
    typer.echo(header(run))
    typer.echo(markdown_table(run.summary()))
    if evidence or judging.mode != "none":
        typer.echo(evidence_table(run.summary()))
    if judging.mode != "none":
        typer.echo(judge_table(run.summary()))
    typer.echo(f"saved {json_path} and {md_path}", err=True)
