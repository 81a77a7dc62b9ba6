"""GBNF grammars that make a local model's implement answer well-formed by construction.

llama-server accepts a `grammar` per request and samples only tokens the grammar allows. The
whole-file answer is one to N blocks (N shown files) of: one of the shown file paths alone on a
line, then a fenced block holding the file's new content. A model so constrained cannot answer with prose, a
path that was not shown, or an unclosed fence; it can still be cut off at the token limit (the
grammar cannot end an answer the model has no tokens left for), which the implement stage
handles as before. What the content says is not the grammar's business: an answer whose content
is only a file name is refused by `edits.apply_edits`.
"""

from __future__ import annotations

from collections.abc import Sequence


def _literal(text: str) -> str:
    """A GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def whole_file_grammar(paths: Sequence[str]) -> str:
    """Blocks of `path` + fenced content, each path one of `paths` (the files shown to the model)."""
    if not paths:
        raise ValueError("a whole-file grammar needs at least one path")
    unique = sorted(set(paths))
    choices = " | ".join(_literal(p) for p in unique)
    # At most one block per shown file: without a bound, small models loop, writing the same files
    # again and again until the token limit (seen with the 1.5B on the demo: cut off, nothing applied).
    more = f'("\\n" block){{0,{len(unique) - 1}}}' if len(unique) > 1 else ""
    # A content line is any line that does not start with three backticks: the first such line
    # closes the fence. Lines are matched whole so the closing fence can only start a line.
    return "\n".join([
        f"root ::= block {more}".rstrip(),
        'block ::= path "\\n```" lang "\\n" line* "```" "\\n"?',
        f"path ::= {choices}",
        'lang ::= [a-z]*',
        'line ::= ( [^`\\n] [^\\n]* | "`" [^`\\n] [^\\n]* | "``" [^`\\n] [^\\n]* )? "\\n"',
    ])
