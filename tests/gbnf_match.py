"""A small GBNF recognizer for tests: does a grammar accept a whole string?

Covers the subset relay's grammars use (string literals, character classes with ranges and
negation, rule references, groups, alternation, `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`), with
set-of-positions semantics, so ambiguity costs nothing and no backtracking is needed. It is not
llama.cpp's parser; it lets a test check a grammar's *language* (what answers it allows) instead
of its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

Node = tuple  # ("lit", str) | ("cls", negated, ranges) | ("ref", name) | ("seq", nodes) | ("alt", nodes) | ("rep", node, lo, hi)


@dataclass
class _Parser:
    text: str
    pos: int = 0

    def ws(self) -> None:
        while self.pos < len(self.text):
            if self.text[self.pos] in " \t\n":
                self.pos += 1
            elif self.text[self.pos] == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def escape(self) -> str:
        c = self.text[self.pos]
        self.pos += 1
        if c != "\\":
            return c
        e = self.text[self.pos]
        self.pos += 1
        return {"n": "\n", "r": "\r", "t": "\t"}.get(e, e)

    def alt(self) -> Node:
        seqs = [self.seq()]
        while True:
            self.ws()
            if self.peek() != "|":
                break
            self.pos += 1
            seqs.append(self.seq())
        return seqs[0] if len(seqs) == 1 else ("alt", tuple(seqs))

    def seq(self) -> Node:
        items: list[Node] = []
        while True:
            save = self.pos
            self.ws()
            c = self.peek()
            if c == "" or c in "|)":
                self.pos = save if c == "" else self.pos
                break
            m = re.match(r"[A-Za-z][A-Za-z0-9_-]*", self.text[self.pos:])
            if m and re.match(r"\s*::=", self.text[self.pos + m.end():]):
                self.pos = save  # the next rule starts here
                break
            items.append(self.quantified(self.atom()))
        return items[0] if len(items) == 1 else ("seq", tuple(items))

    def atom(self) -> Node:
        c = self.peek()
        if c == '"':
            self.pos += 1
            out = []
            while self.peek() != '"':
                out.append(self.escape())
            self.pos += 1
            return ("lit", "".join(out))
        if c == "[":
            self.pos += 1
            negated = self.peek() == "^"
            if negated:
                self.pos += 1
            ranges = []
            while self.peek() != "]":
                lo = self.escape()
                hi = lo
                if self.peek() == "-" and self.text[self.pos + 1] != "]":
                    self.pos += 1
                    hi = self.escape()
                ranges.append((lo, hi))
            self.pos += 1
            return ("cls", negated, tuple(ranges))
        if c == "(":
            self.pos += 1
            node = self.alt()
            self.ws()
            assert self.peek() == ")", f"expected ) at {self.pos}"
            self.pos += 1
            return node
        m = re.match(r"[A-Za-z][A-Za-z0-9_-]*", self.text[self.pos:])
        assert m, f"unexpected {self.text[self.pos:self.pos + 20]!r}"
        self.pos += m.end()
        return ("ref", m.group())

    def quantified(self, node: Node) -> Node:
        c = self.peek()
        if c == "*":
            self.pos += 1
            return ("rep", node, 0, None)
        if c == "+":
            self.pos += 1
            return ("rep", node, 1, None)
        if c == "?":
            self.pos += 1
            return ("rep", node, 0, 1)
        m = re.match(r"\{(\d+)(,(\d*))?\}", self.text[self.pos:])
        if m:
            self.pos += m.end()
            lo = int(m.group(1))
            hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
            return ("rep", node, lo, hi)
        return node


def parse(grammar: str) -> dict[str, Node]:
    p = _Parser(grammar)
    rules: dict[str, Node] = {}
    while True:
        p.ws()
        if p.pos >= len(p.text):
            return rules
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*::=", p.text[p.pos:])
        assert m, f"expected a rule at {p.text[p.pos:p.pos + 30]!r}"
        p.pos += m.end()
        rules[m.group(1)] = p.alt()


def accepts(grammar: str, text: str) -> bool:
    rules = parse(grammar)

    @cache
    def ends(node: Node, start: int) -> frozenset[int]:
        kind = node[0]
        if kind == "lit":
            return frozenset({start + len(node[1])}) if text.startswith(node[1], start) else frozenset()
        if kind == "cls":
            if start >= len(text):
                return frozenset()
            inside = any(lo <= text[start] <= hi for lo, hi in node[2])
            return frozenset({start + 1}) if inside != node[1] else frozenset()
        if kind == "ref":
            return ends(rules[node[1]], start)
        if kind == "alt":
            return frozenset().union(*(ends(n, start) for n in node[1]))
        if kind == "seq":
            positions = frozenset({start})
            for item in node[1]:
                positions = frozenset().union(*(ends(item, p) for p in positions)) if positions else positions
            return positions
        _, inner, lo, hi = node
        result: set[int] = set()
        positions = frozenset({start})
        count = 0
        seen: set[int] = set()
        while positions:
            if count >= lo:
                result |= positions
            if hi is not None and count >= hi:
                break
            nxt = frozenset().union(*(ends(inner, p) for p in positions))
            if count >= lo:
                nxt = nxt - seen  # positions already expanded add nothing new once the minimum is met
            seen |= positions
            positions = nxt
            count += 1
        return frozenset(result)

    return len(text) in ends(rules["root"], 0)
