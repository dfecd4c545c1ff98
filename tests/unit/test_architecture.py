"""The tree is the architecture diagram: its contracts hold, and a broken one is caught.

The import contracts live in pyproject.toml (import-linter; `make lint` runs them too). What
import-linter cannot see, that the pure core reads no files, is checked here on the syntax
tree, and so is the size of every module, the tests' and the tools' included.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_MODULE_LINES = 400


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _pure_modules() -> list[str]:
    [pure] = [c for c in _contracts() if c["id"] == "pure-core"]
    modules = pure["source_modules"]
    assert isinstance(modules, list)
    return [str(m) for m in modules]


def _path(module: str, root: Path = ROOT) -> Path:
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root)},
    )


def _copy_tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("receiver", "remediations"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("receiver.engine", "import asyncpg", "pure core"),
        ("receiver.matchers", "from receiver.store import Store", "pure core"),
        ("remediations.names", "import receiver.model", "Actions never import the service"),
        ("receiver.store.records", "import receiver.http", "No upward imports"),
    ],
)
def test_a_broken_contract_is_caught(tmp_path: Path, module: str, line: str, contract: str) -> None:
    copy = _copy_tree(tmp_path)
    path = _path(module, copy)
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert contract in result.stdout
    assert "BROKEN" in result.stdout


# Calls that read the disk (or the environment, which is configuration's job).
_FILE_READS = frozenset(
    {"open", "read_text", "read_bytes", "iterdir", "glob", "rglob", "stat", "exists", "getenv"}
)


@pytest.mark.parametrize("module", _pure_modules())
def test_the_pure_core_reads_no_files(module: str) -> None:
    tree = ast.parse(_path(module).read_text())
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in _FILE_READS:
                calls.append(f"{module}:{node.lineno} {name}()")
        if isinstance(node, ast.Attribute) and node.attr == "environ":
            calls.append(f"{module}:{node.lineno} environ")
    assert calls == []


def test_every_module_is_one_job_under_the_size_limit() -> None:
    too_big = {
        str(path.relative_to(ROOT)): n
        for folder in ("receiver", "remediations", "bench", "tests", "hack")
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_big == {}
