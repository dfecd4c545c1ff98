"""``remediator events`` / ``jobs`` tables: a long free-text cell is cut, never folded over
the rows around it (the whole text stays in ``--json`` and ``show ID``)."""

from __future__ import annotations

from receiver.cli.queues import _cells


def test_a_long_skip_reason_error_and_alertname_are_cut_with_an_ellipsis() -> None:
    reason = "label clash: " + "x" * 500
    row = {
        "id": 7,
        "alertname": "A" * 300,
        "state": "done",
        "last_error": "E" * 200,
        "skips": [{"rule": "restart", "reason": reason}],
    }
    cells = _cells("event", row)
    assert cells[0] == "7"
    for cell in (cells[2], cells[6], cells[7]):
        assert len(cell) == 80
        assert cell.endswith("…")
    assert cells[7].startswith("restart: label clash: xxx")


def test_short_cells_are_shown_whole() -> None:
    row = {"id": 1, "kind": "resume_run", "run_id": "r-1", "last_error": "boom"}
    cells = _cells("job", row)
    assert cells[2:4] == ("resume_run", "r-1")
    assert cells[6] == "boom"
