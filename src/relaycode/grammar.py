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
    """Blocks of `path` + fenced content: each shown file at most once, in the order shown, at least one.

    At most once: without that bound small models loop, writing the same files again and again
    until the token limit (the 1.5B on the demo: cut off, nothing applied), or write one file twice
    (the second copy silently wins). In the order shown: that is what makes "at most once" a grammar
    of linear size (a chain of optional blocks) instead of one alternative per ordering; the most
    relevant file is shown first, so the order costs the model nothing."""
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise ValueError("a whole-file grammar needs at least one path")
    # files_i: a non-empty, ordered choice among paths i..n-1 (take path i and maybe more after it, or skip it).
    rules = ["root ::= files0"]
    last = len(unique) - 1
    for i, path in enumerate(unique):
        take = f"block{i}" if i == last else f'block{i} ("\\n" files{i + 1})?'
        rules.append(f"files{i} ::= {take}" + ("" if i == last else f" | files{i + 1}"))
        rules.append(f'block{i} ::= {_literal(path)} fence')
    # A content line is any line that does not start with three backticks (a line of one or two
    # backticks is content): the first such line closes the fence. Lines are matched whole so the
    # closing fence can only start a line.
    rules += [
        'fence ::= "\\n```" lang "\\n" line* "```" "\\n"?',
        'lang ::= [a-z]*',
        'line ::= ( [^`\\n] [^\\n]* | "`" rest? | "``" rest? )? "\\n"',
        'rest ::= [^`\\n] [^\\n]*',
    ]
    return "\n".join(rules)
