"""The architecture holds: imports point downward only, and each outside library has one home."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "digest"

LAYERS = {
    "cli": 1,
    "web": 1,
    "scheduler": 1,
    "__main__": 1,
    "pipeline": 2,
    "sources": 3,
    "store": 3,
    "ranking": 3,
    "render": 3,
    "deliver": 3,
    "config": 4,
    "models": 4,
    "tokens": 4,
    "owners": 4,
    "logs": 4,
    "metrics": 4,
    "text": 4,
    "urls": 4,
}
# Each of these libraries is imported by one part only, so swapping it touches one place.
HOMES = {
    "httpx": "sources",
    "feedparser": "sources",
    "sqlalchemy": "store",
    "alembic": "store",
    "aiosmtplib": "deliver",
    "prometheus_client": "metrics",
    "pylatexenc": "text",
    "ftfy": "sources",
    "defusedxml": "sources",
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "digest":
                found.update(f"digest.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(path: Path) -> None:
    here = part_of(path)
    if here == "__init__":
        return
    for name in imports(path):
        if not name.startswith("digest."):
            continue
        there = name.split(".")[1]
        if there == here or there not in LAYERS:
            continue
        if here in ("cli", "__main__") and LAYERS[there] == 1:
            continue  # the command line starts the web server and the scheduler
        assert LAYERS[there] > LAYERS[here] or (LAYERS[here] == 4 and LAYERS[there] == 4), (
            f"{path.relative_to(PACKAGE)} (layer {LAYERS[here]}) imports {name} (layer {LAYERS[there]})"
        )


@pytest.mark.parametrize("library, home", sorted(HOMES.items()))
def test_each_outside_library_has_one_home(library: str, home: str) -> None:
    importers = {
        part_of(path)
        for path in modules()
        if any(name == library or name.startswith(library + ".") for name in imports(path))
    }
    assert importers <= {home}, f"{library} is imported outside digest/{home}: {importers}"
