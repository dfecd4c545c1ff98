"""``written_whole`` (the CLI's ``-o FILE``): FILE gets the new text only once it is whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.cli.common import written_whole


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "export.jsonl"
    target.write_text("kept\n")

    def export() -> None:
        with written_whole(target) as out:
            out.write("half")
            raise RuntimeError("the export failed")

    with pytest.raises(RuntimeError):
        export()
    assert target.read_text() == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["export.jsonl"]


def test_a_link_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    # Replacing the link itself would leave the file it names stale and the link a copy.
    target = tmp_path / "exports" / "today.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "current.jsonl"
    link.symlink_to(target)
    with written_whole(link) as out:
        out.write("new\n")
    assert link.is_symlink()
    assert target.read_text() == "new\n"
