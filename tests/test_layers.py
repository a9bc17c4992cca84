"""The rooms' import rules (docs/architecture.md), checked on the source: arrows point down only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tunesmith"
LEAVES = {
    "settings",
    "errors",
    "ids",
    "logs",
    "signals",
    "tasks",
    "atomic",
    "processes",
}  # import nothing of ours but each other
# room -> the rooms it may import (besides the leaves). Keep in step with docs/architecture.md.
MAY_IMPORT: dict[str, set[str]] = {
    "models": set(),
    "data": {"models"},
    "store": {"models"},
    "train": {"models", "data", "store", "infer", "graders"},
    "infer": {"models", "data", "export"},
    "graders": {"models", "data", "infer"},
    "export": {"models", "data"},
    "jobs": {"models", "data", "store", "train", "export", "graders"},
    "evals": {"models", "data", "store", "train", "infer", "jobs", "export", "graders"},
    "api": {"models", "data", "store", "train", "infer", "jobs", "evals", "export", "graders"},
    "cli": {
        "models",
        "data",
        "store",
        "train",
        "infer",
        "jobs",
        "evals",
        "api",
        "export",
        "graders",
    },
}


def imports(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        rooms |= {n.split(".")[1] for n in names if n.startswith("tunesmith.") and "." in n}
    return rooms


def test_every_room_imports_only_the_rooms_below_it():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        room = parts[0].removesuffix(".py")
        if room == "__init__":
            continue
        allowed = LEAVES | MAY_IMPORT.get(room, set()) | {room}
        wrong += [f"{path.relative_to(PACKAGE)} imports {r}" for r in imports(path) - allowed]
    assert wrong == []


def test_every_room_is_in_the_map():
    rooms = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    rooms.discard("py.typed")
    assert rooms <= LEAVES | set(MAY_IMPORT) | {"__pycache__"}
