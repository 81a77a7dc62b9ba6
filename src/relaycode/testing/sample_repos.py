"""Sample repositories for `relay demo` and tests: small, real, with a real bug."""

from __future__ import annotations

import subprocess
from pathlib import Path

DEMO_TASK = (
    "The test suite fails: tests/test_cart.py::test_discount_applies_to_total. "
    "Find the bug in the library code and fix it. Do not change the tests."
)

DEMO_FILES: dict[str, str] = {
    "README.md": "# shop\n\nA tiny shop library: a cart with discounts, and pagination of product lists.\n",
    "shop/__init__.py": '"""A tiny shop library."""\n',
    "shop/cart.py": '''"""A shopping cart with per-line quantities and a percentage discount."""

from dataclasses import dataclass, field


@dataclass
class Cart:
    lines: dict[str, tuple[float, int]] = field(default_factory=dict)

    def add(self, sku: str, price: float, quantity: int = 1) -> None:
        """Add `quantity` items of `sku` at `price` each."""
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        old_price, old_qty = self.lines.get(sku, (price, 0))
        self.lines[sku] = (price, old_qty + quantity)

    def total(self, discount_percent: float = 0.0) -> float:
        """Sum of price * quantity, minus a percentage discount, rounded to cents."""
        gross = sum(price * qty for price, qty in self.lines.values())
        return round(gross * (1 + discount_percent / 100), 2)
''',
    "shop/pagination.py": '''"""Split product lists into pages. Pages are numbered from 1."""


def page_count(total_items: int, per_page: int) -> int:
    """How many pages `total_items` fill, at `per_page` items each."""
    if per_page <= 0:
        raise ValueError("per_page must be positive")
    return (total_items + per_page - 1) // per_page


def paginate(items: list, page: int, per_page: int) -> list:
    """The items on page `page` (1-based) of `per_page` items each."""
    if page < 1:
        raise ValueError("pages start at 1")
    start = (page - 1) * per_page
    return items[start:start + per_page]
''',
    "tests/test_cart.py": '''from shop.cart import Cart


def test_total_sums_lines():
    cart = Cart()
    cart.add("apple", 0.5, 4)
    cart.add("pear", 1.25)
    assert cart.total() == 3.25


def test_discount_applies_to_total():
    cart = Cart()
    cart.add("book", 20.0, 2)
    assert cart.total(discount_percent=10) == 36.0
''',
    "tests/test_pagination.py": '''import pytest

from shop.pagination import page_count, paginate

ITEMS = list(range(1, 26))  # 25 products


def test_page_count_rounds_up():
    assert page_count(25, 10) == 3


def test_first_page_starts_at_first_item():
    assert paginate(ITEMS, 1, 10) == list(range(1, 11))


def test_last_page_is_partial():
    assert paginate(ITEMS, 3, 10) == [21, 22, 23, 24, 25]


def test_page_zero_is_rejected():
    with pytest.raises(ValueError):
        paginate(ITEMS, 0, 10)
''',
    "pyproject.toml": '[project]\nname = "shop"\nversion = "0.1.0"\n\n[tool.pytest.ini_options]\npythonpath = ["."]\n',
}


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "-c", "user.name=relay demo", "-c", "user.email=demo@localhost",
         *args],
        cwd=root, check=True, capture_output=True,
    )


def make_repo(root: Path, files: dict[str, str], message: str = "initial") -> Path:
    """Create a git repository at `root` with `files` in one commit."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return root


PAGINATION_TASK = (
    "The test suite fails: tests/test_pagination.py::test_first_page_starts_at_first_item. "
    "Find the bug in the library code and fix it. Do not change the tests."
)


#: Edit blocks for the pagination bug, for scripted implementers: the right fix and a wrong one.
PAGINATION_FIX = """shop/pagination.py
<<<<<<< SEARCH
    start = page * per_page
=======
    start = (page - 1) * per_page
>>>>>>> REPLACE
"""
PAGINATION_WRONG_FIX = PAGINATION_FIX.replace("(page - 1) * per_page", "page * per_page - 1")


def pagination_bug_files() -> dict[str, str]:
    """The shop with a correct cart and pagination off by one page (the scripted-model tests' bug)."""
    files = dict(DEMO_FILES)
    files["shop/cart.py"] = files["shop/cart.py"].replace("(1 + discount_percent", "(1 - discount_percent")
    files["shop/pagination.py"] = files["shop/pagination.py"].replace("start = (page - 1) * per_page",
                                                                      "start = page * per_page")
    return files


def make_demo_repo(root: Path, *, bug: str = "discount") -> Path:
    """The `relay demo` repository: a shop library with one real bug.

    `discount` (the demo): the discount raises the price instead of lowering it.
    `pagination`: pages are off by one (used by tests with scripted models).
    """
    files = DEMO_FILES if bug == "discount" else pagination_bug_files()
    return make_repo(root, files, "shop: cart and pagination")


def snapshot_checkout(root: Path) -> dict[str, str]:
    """Hashes of every file, plus `git status` and the index: equal snapshots mean an untouched checkout."""
    import hashlib

    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[:1] != (".git",):
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    status = subprocess.run(["git", "status", "--porcelain=v2", "--untracked-files=all"], cwd=root,
                            capture_output=True, text=True, check=True)
    out["<status>"] = status.stdout
    out["<index>"] = hashlib.sha256((root / ".git" / "index").read_bytes()).hexdigest()
    out["<HEAD>"] = (root / ".git" / "HEAD").read_text()
    return out
