"""Plan: the task and a compact repo map in, a reviewable plan out.

A plan is short on purpose: a person can read and edit it faster than a diff.
It renders to `plan.md` and parses back from it, so a person (or another
model) can write or edit the plan and hand it to `relay run --plan plan.md`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from relaycode.errors import UsageError

if TYPE_CHECKING:
    from relaycode.session import ModelSession


class Plan(BaseModel):
    """What to change, where, in which order, and how to know it is done."""

    goal: str = Field(description="One or two sentences: what the change achieves.")
    files: list[str] = Field(default_factory=list, description="Repository paths to change or create.")
    steps: list[str] = Field(default_factory=list, description="Ordered, concrete steps for the implementer.")
    acceptance: list[str] = Field(
        default_factory=list, description="Checks that prove it done: tests to pass, behaviour to observe."
    )

    def to_markdown(self) -> str:
        def bullets(items: list[str], numbered: bool = False) -> str:
            if not items:
                return "- (none)\n"
            return "".join(f"{i + 1}. {x}\n" if numbered else f"- {x}\n" for i, x in enumerate(items))

        files = [f"`{f}`" for f in self.files]
        return (
            "# Plan\n\n## Goal\n\n" + self.goal.strip() + "\n\n## Files\n\n" + bullets(files)
            + "\n## Steps\n\n" + bullets(self.steps, numbered=True)
            + "\n## Acceptance checks\n\n" + bullets(self.acceptance)
        )

    @classmethod
    def from_markdown(cls, text: str, *, source: str = "plan") -> Plan:
        """Parse a plan.md (as written by `to_markdown`, or by a person following its headings)."""
        sections: dict[str, list[str]] = {}
        current: str | None = None
        for line in text.splitlines():
            heading = re.match(r"^#{2,3}\s+(.+?)\s*$", line)
            if heading:
                current = heading.group(1).strip().lower()
                sections[current] = []
            elif current is not None:
                sections[current].append(line)

        def items(*names: str) -> list[str]:
            for name in names:
                if name in sections:
                    out = []
                    for line in sections[name]:
                        m = re.match(r"^\s*(?:[-*+]|\d+[.)])\s+(.*\S)\s*$", line)
                        if m and m.group(1) != "(none)":
                            out.append(m.group(1))
                    return out
            return []

        goal = "\n".join(sections.get("goal", [])).strip()
        if not goal:
            raise UsageError(f"{source}: plan does not parse: it needs a '## Goal' section with text")
        files = [f.strip("`") for f in items("files")]
        return cls(goal=goal, files=files, steps=items("steps"), acceptance=items("acceptance checks", "acceptance"))


PLAN_INSTRUCTIONS = """You are the planner of a coding pipeline. Another model will implement your plan, \
so be concrete and brief. Read the task and the repository map, then give:
- goal: what the change achieves, in one or two sentences;
- files: the repository paths that must change (existing paths from the map, or new ones);
- steps: short ordered steps, each naming the function or place to change and what to do;
- acceptance: the checks that prove it done (tests that must pass, behaviour).
Do not write the code itself."""


def plan_prompt(task: str, repo_map: str, checks: str | None = None) -> str:
    text = f"# Task\n\n{task.strip()}\n\n# Repository map\n\n{repo_map.strip()}\n"
    if checks:
        text += f"\n# Current test results (before any change)\n\n{checks.strip()}\n"
    return text


async def make_plan(session: ModelSession, spec: str, task: str, repo_map: str, *, known_files: list[str],
                    checks: str | None = None) -> Plan:
    """Ask the planner for a plan; paths the planner invents outside the repo map are kept only if new."""
    answer = await session.ask("plan", spec, plan_prompt(task, repo_map, checks), instructions=PLAN_INSTRUCTIONS,
                               output_type=Plan)
    plan: Plan = answer.output
    # Small models sometimes name files with a leading "./" or "/".
    cleaned = []
    for path in plan.files:
        p = path.strip().strip("`").removeprefix("./").lstrip("/")
        if p and p not in cleaned:
            cleaned.append(p)
    plan.files = cleaned
    return plan
