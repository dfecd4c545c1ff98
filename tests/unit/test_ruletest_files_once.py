"""``remediator test`` plays a file given more than once once, as pytest does a path given
twice: played again, its tests counted twice in a summary that said "1 file(s)"."""

from __future__ import annotations

import os
from pathlib import Path

from receiver.ruletest.run import load_files
from remediations.registry import default_registry

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "tests"


def test_a_file_named_twice_or_by_another_path_is_loaded_once(tmp_path: Path) -> None:
    first = SHIPPED / "high-memory.yaml"
    other = SHIPPED / "queue-backlog.yaml"
    link = tmp_path / "same.yaml"
    link.symlink_to(first)
    spelled = Path(os.path.relpath(first))  # from the working directory, not absolute
    files, errors = load_files([first, other, spelled, first, link], default_registry())
    assert errors == []
    # Each as first given.
    assert [f.path for f in files] == [str(first), str(other)]
