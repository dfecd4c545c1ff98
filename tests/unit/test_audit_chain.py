"""Telling what broke the audit chain from the rows around the break (pure)."""

from __future__ import annotations

from receiver.store.chain import Break, ChainRow, Link, diagnose, diagnose_end


def _chain(n: int) -> list[ChainRow]:
    rows, prev = [], ""
    for i in range(1, n + 1):
        rows.append(ChainRow(i, prev, f"h{i}", True))
        prev = f"h{i}"
    return rows


def test_an_intact_row_is_no_break() -> None:
    a, b, c = _chain(3)
    assert diagnose(None, a, [b, c]) is None
    assert diagnose(a, b, [c], None) is None


def test_an_edited_row_still_linked_both_ways() -> None:
    a, b, c = _chain(3)
    edited = ChainRow(b.id, b.prev_hash, b.hash, sound=False)
    found = diagnose(a, edited, [c], None)
    assert found == Break("edited", 2, "row 2 was edited: its content does not match its hash")


def test_a_row_rewritten_with_a_new_hash_shows_at_the_next_row() -> None:
    a, b, c = _chain(3)
    rewritten = ChainRow(b.id, b.prev_hash, "new", True)
    found = diagnose(rewritten, c, [], a)
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", 2)


def test_a_row_slipped_in_with_a_good_link_shows_at_the_next_row() -> None:
    a, b = _chain(2)
    forged = ChainRow(5, a.hash, "forged", True)
    moved_b = ChainRow(6, b.prev_hash, b.hash, True)
    found = diagnose(forged, moved_b, [], a)
    assert found is not None
    assert (found.kind, found.row_id) == ("inserted", 5)
    # At the very start: the first real row links to nothing, past the forged one.
    first = ChainRow(0, "", "forged", True)
    found = diagnose(first, a, [b], None)
    assert found is not None
    assert (found.kind, found.row_id) == ("inserted", 0)


def test_a_row_whose_link_was_edited_is_named_not_the_row_before_it() -> None:
    # Its hash covers its link: a link edited without the hash leaves the row unsound, while a
    # row after one rewritten with a new hash is sound. Row 1 is intact and was named.
    a, b, c = _chain(3)
    relinked = ChainRow(b.id, "edited", b.hash, sound=False)
    found = diagnose(a, relinked, [c], None)
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", 2)
    assert "row 2 was edited" in found.reason
    # The first row, and a row after a gap in the ids (the sequence leaves some): "deleted".
    found = diagnose(None, ChainRow(a.id, "edited", a.hash, sound=False), [b, c])
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", 1)
    after_gap = ChainRow(9, "edited", c.hash, sound=False)
    found = diagnose(b, after_gap, [], a)
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", 9)


def test_a_crude_insert_is_told_by_the_row_after_it() -> None:
    a, b = _chain(2)
    crude = ChainRow(7, a.hash, "junk", sound=False)
    found = diagnose(a, crude, [b], None)
    assert found is not None
    assert (found.kind, found.row_id) == ("inserted", 7)


def test_a_deleted_row_leaves_a_link_to_nothing() -> None:
    a, _, c, d = _chain(4)
    found = diagnose(a, c, [d], None)
    assert found is not None
    assert (found.kind, found.row_id) == ("deleted", 3)


def test_swapped_rows_are_reordered() -> None:
    a, b, c, d = _chain(4)
    swapped_c = ChainRow(2, c.prev_hash, c.hash, True)
    swapped_b = ChainRow(3, b.prev_hash, b.hash, True)
    found = diagnose(a, swapped_c, [swapped_b, d], None)
    assert found is not None
    assert (found.kind, found.row_id) == ("reordered", 2)
    assert "appended after row 3" in found.reason


def test_the_end_of_the_chain_must_be_the_head() -> None:
    rows = _chain(3)
    last = rows[-1]
    assert diagnose_end(last, 3, last.hash, last, None) is None
    assert diagnose_end(None, None, "", None, None) is None
    extra = ChainRow(4, last.hash, "h4", True)
    found = diagnose_end(extra, 3, last.hash, last, 4)
    assert found is not None
    assert (found.kind, found.row_id) == ("inserted", 4)
    found = diagnose_end(rows[1], 3, last.hash, None, None)
    assert found is not None
    assert (found.kind, found.row_id) == ("deleted", 3)
    found = diagnose_end(None, 3, last.hash, None, None)
    assert found is not None
    assert "no row at all" in found.reason
    found = diagnose_end(last, 3, "other", last, None)
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", 3)


def test_a_row_past_the_head_that_breaks_the_chain_is_inserted_there() -> None:
    _, b, c = _chain(3)
    copy_of_b = ChainRow(4, b.prev_hash, b.hash, True)  # links to a row still in the log
    inserted = Break(
        "inserted", 4, "row 4 was inserted after the last row the service appended (row 3)"
    )
    assert diagnose(c, copy_of_b, [], b, head_id=3) == inserted
    # Named from the first row past the head, when one before it passed.
    later = ChainRow(5, "elsewhere", "h5", True)
    found = diagnose(copy_of_b, later, [], c, head_id=3, first_after_head=4)
    assert found is not None
    assert (found.kind, found.row_id) == ("inserted", 4)
    # Without the head, the same row reads by the chain's other rules.
    assert diagnose(c, copy_of_b, [], b) != inserted


def test_a_head_whose_id_and_hash_name_different_rows_was_edited() -> None:
    # Every append writes the head's last_id and last_hash together: its last_id changed
    # alone (down, up, emptied) left a chain that "ended where the head says".
    rows = _chain(3)
    last = rows[-1]
    for head_id in (2, 7, None):
        found = diagnose_end(last, head_id, last.hash, rows[1] if head_id == 2 else None, None)
        assert found is not None, head_id
        assert (found.kind, found.row_id) == ("edited", None)
        assert found.reason.startswith("audit_head was edited: it names ")
        assert "holds the hash of row 3, where the chain ends" in found.reason
    # The last rows deleted and only the head's hash moved back to the row before them.
    found = diagnose_end(rows[0], 3, rows[0].hash, None, None)
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", None)
    assert "rows after row 1 were deleted" in found.reason
    # Every row deleted (TRUNCATE) and the head's hash reset to an empty log's.
    found = diagnose_end(None, 3, "", None, None)
    assert found is not None
    assert "names row 3" in found.reason
    assert "holds the hash of an empty log" in found.reason
    # The head's hash moved back to an earlier row, the rows after it still in the log.
    found = diagnose_end(last, 3, rows[0].hash, last, None, head_hash_row=1)
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", None)
    assert "holds the hash of row 1, though the chain goes on to row 3" in found.reason
    # A fresh log, and a head that agrees, pass.
    assert diagnose_end(None, None, "", None, None) is None
    assert diagnose_end(last, 3, last.hash, last, None, head_hash_row=3) is None


def test_a_link_found_past_the_rows_read_ahead_tells_the_break() -> None:
    rows = _chain(9)
    # Row 9 moved into row 3's place (its id changed, so its hash no longer matches): it
    # links to row 8, beyond the rows read ahead. Told as row 3 edited before.
    moved = ChainRow(3, rows[7].hash, rows[8].hash, sound=False)
    found = diagnose(rows[1], moved, [], rows[0], linked=Link(8, 9))
    assert found is not None
    assert (found.kind, found.row_id) == ("reordered", 3)
    assert "appended after row 8" in found.reason
    # Rows 4 and 5 slipped in after row 3 (with good links and hashes): row 6, renumbered to
    # make room, links past both to row 3. Told as row 6 edited before.
    a, b, c = rows[:3]
    forged_4 = ChainRow(4, c.hash, "f4", True)
    forged_5 = ChainRow(5, "f4", "f5", True)
    renumbered = ChainRow(106, c.hash, rows[3].hash, sound=False)
    found = diagnose(forged_5, renumbered, [], forged_4, linked=Link(3, 4))
    assert found == Break(
        "inserted", 4, "rows 4 to 5 were inserted: row 106 after them links past them to row 3"
    )
    # A link to no row in the log reads as before.
    assert diagnose(b, ChainRow(4, "gone", "h", True), [], a, linked=None) == diagnose(
        b, ChainRow(4, "gone", "h", True), [], a
    )


def test_a_row_whose_hash_matches_another_id_was_renumbered() -> None:
    a, b, c, d = _chain(4)
    # Row 2 deleted and rows 3 and 4 moved down one: row 2 (was 3) links to no row in the
    # log, and its hash matches id 3.
    closed_up = ChainRow(2, c.prev_hash, c.hash, sound=False)
    found = diagnose(a, closed_up, [], None, renumbered_from=3)
    assert found is not None
    assert (found.kind, found.row_id) == ("deleted", 2)
    assert "row 2 was appended as row 3" in found.reason
    # Without the id that matches, as before: edited.
    found = diagnose(a, closed_up, [], None)
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", 2)
    # Row 4 moved to id 5, its link intact: renumbered, even past the head.
    moved = ChainRow(5, d.prev_hash, d.hash, sound=False)
    found = diagnose(c, moved, [], b, head_id=4, renumbered_from=4)
    assert found is not None
    assert (found.kind, found.row_id) == ("edited", 5)
    assert "row 5 was renumbered: it was appended as row 4" in found.reason
