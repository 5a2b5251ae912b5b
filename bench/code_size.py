"""The longest functions and the largest files of the application code (issue 17's figures).

    python bench/code_size.py [--functions 15] [--files 10] [--all]

Counts source lines (``end_lineno - lineno + 1``, docstring and comments included) of every
function and method in the tracked Python files; tests/ and bench/ are left out unless ``--all``.
Runs without Django, so the before and after figures of a refactor come from the same script.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = ("tests/", "bench/", "migrations/")


def python_files(include_all: bool) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    keep = [name for name in listed if include_all or not any(part in name for part in SKIPPED)]
    return [ROOT / name for name in keep if (ROOT / name).exists()]


def functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append(((child.end_lineno or child.lineno) - child.lineno + 1, name))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=15)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--all", action="store_true", help="count tests/ and bench/ too")
    args = parser.parse_args()
    files = python_files(args.all)
    rows: list[tuple[int, str]] = []
    sizes: list[tuple[int, str]] = []
    for path in files:
        relative = str(path.relative_to(ROOT))
        sizes.append((len(path.read_text(encoding="utf-8").splitlines()), relative))
        rows.extend((length, f"{relative}:{name}") for length, name in functions(path))
    print(f"{args.functions} longest functions (lines):")
    for length, name in sorted(rows, reverse=True)[: args.functions]:
        print(f"  {length:5d}  {name}")
    print(f"{args.files} largest files (lines):")
    for length, name in sorted(sizes, reverse=True)[: args.files]:
        print(f"  {length:5d}  {name}")
    over = sum(1 for length, _ in rows if length > 60)
    print(f"functions over 60 lines: {over} of {len(rows)}")


if __name__ == "__main__":
    main()
