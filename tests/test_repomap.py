"""Tests for relaycode.repomap on a small generated repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaycode.repomap import relevant_files, repo_map, signatures

FILES = {
    "src/shop/cart.py": '''"""Shopping cart."""

class Cart:
    """A customer's cart of line items."""

    def add_item(self, sku: str, qty: int = 1) -> None:
        """Add qty of sku to the cart."""

    def total_price(self) -> float:
        return 0.0


def apply_discount(cart: Cart, percent: float) -> float:
    """Apply a percentage discount to the cart total."""
    return cart.total_price() * (1 - percent / 100)
''',
    "src/shop/payment.py": '''class PaymentGateway:
    async def charge(self, amount: float, *, currency: str = "EUR") -> str:
        """Charge a card."""
        return "ok"
''',
    "src/shop/__init__.py": "",
    "web/static/app.js": (
        "export function renderCart(items) {\n  return items.map(i => i.sku);\n}\n"
        "class CartView {\n  constructor() {}\n}\nconst x = 1;\n"
    ),
    "tests/test_cart.py": "from shop.cart import Cart, apply_discount\n\ndef test_discount():\n    assert apply_discount(Cart(), 10) == 0\n",
    "docs/guide.md": "# Guide\n\nNothing about carts here.\n",
    "assets/logo.png": "\x89PNG\x00\x00binary",
}


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    for rel, text in FILES.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path, sorted(FILES)


def test_relevant_files_ranks_by_overlap(repo: tuple[Path, list[str]]) -> None:
    root, files = repo
    ranked = relevant_files(root, files, "The discount is applied twice to the cart total")
    assert ranked[0] == "src/shop/cart.py"
    assert "src/shop/payment.py" not in ranked  # shares nothing with the task
    assert "tests/test_cart.py" not in ranked  # tests only when the task is about tests


def test_relevant_files_includes_tests_when_task_mentions_failures(repo: tuple[Path, list[str]]) -> None:
    root, files = repo
    ranked = relevant_files(root, files, "test_discount fails: apply_discount returns the wrong value")
    assert set(ranked[:2]) == {"src/shop/cart.py", "tests/test_cart.py"}


def test_relevant_files_identifier_pieces_and_explicit_path(repo: tuple[Path, list[str]]) -> None:
    root, files = repo
    assert relevant_files(root, files, "PaymentGateway should retry the charge")[0] == "src/shop/payment.py"
    assert relevant_files(root, files, "renderCart shows duplicates")[0] == "web/static/app.js"
    assert relevant_files(root, files, "update docs/guide.md")[0] == "docs/guide.md"
    assert relevant_files(root, files, "the the the") == []
    assert relevant_files(root, files, "cart", limit=1) == ["src/shop/cart.py"]


def test_python_signatures() -> None:
    sigs = signatures("src/shop/cart.py", FILES["src/shop/cart.py"])
    assert sigs == [
        "class Cart:  # A customer's cart of line items.",
        "  def add_item(self, sku: str, qty: int=1) -> None:  # Add qty of sku to the cart.",
        "  def total_price(self) -> float:",
        "def apply_discount(cart: Cart, percent: float) -> float:  # Apply a percentage discount to the cart total.",
    ]
    assert signatures("p.py", FILES["src/shop/payment.py"])[1].startswith(
        "  async def charge(self, amount: float, *, currency: str='EUR') -> str:"
    )


def test_regex_signatures_for_other_languages_and_broken_python() -> None:
    assert signatures("web/static/app.js", FILES["web/static/app.js"]) == [
        "export function renderCart(items)",
        "class CartView",
    ]
    rust = "pub struct Point {\n    x: i32,\n}\nimpl Point {\n    pub fn norm(&self) -> f64 {\n        0.0\n    }\n}\n"
    assert signatures("src/lib.rs", rust) == [
        "pub struct Point",
        "impl Point",
        "    pub fn norm(&self) -> f64",
    ]
    assert signatures("bad.py", "def broken(:\n    pass\nclass Ok:\n") == ["def broken(:", "class Ok:"]


def test_repo_map_has_tree_and_relevant_signatures_only(repo: tuple[Path, list[str]]) -> None:
    root, files = repo
    out = repo_map(root, files, "apply_discount gives a wrong cart total")
    assert out.startswith(f"Files ({len(files)}):\n")
    for f in files:
        assert f in out  # small tree: every path is listed
    assert "def apply_discount(cart: Cart, percent: float) -> float:" in out
    assert "PaymentGateway" not in out  # irrelevant file's signatures are not shown
    assert "return cart.total_price()" not in out  # signatures, never bodies


def test_repo_map_respects_budget_on_a_big_repo(tmp_path: Path) -> None:
    files = []
    for i in range(400):
        rel = f"pkg/mod{i // 50}/file_{i}.py"
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        funcs = "".join(f"def widget_{i}_{k}(a, b):\n    '''Widget helper {k}.'''\n\n" for k in range(30))
        p.write_text(funcs)
        files.append(rel)
    for budget in (1000, 3000, 6000):
        out = repo_map(tmp_path, files, "widget_7_3 is slow", max_chars=budget)
        assert len(out) <= budget
        assert "pkg/mod0/file_7.py" in out  # the relevant file survives tree compression
        assert "(50 files)" in out  # the rest is summarised per directory
    assert "def widget_7_3(a, b):" in repo_map(tmp_path, files, "widget_7_3 is slow", max_chars=6000)
