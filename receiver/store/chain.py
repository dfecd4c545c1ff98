"""What broke the audit chain, told from the rows around the first break. Pure: no I/O.

Each row stores the hash of the row before it (``prev_hash``) and its own (``hash``, over its
content and that link). Walking the rows by id, the first one that does not follow from the
last good row is where the log was changed; the rows after it say how:

- **edited**: the row links to the row before it but its content no longer gives its hash, and
  the next row still links to it;
- **inserted**: the next row links past it, to the row before it (the chain never had it; a
  row inserted with a well-made link and hash shows one row later, when the row after it links
  past it; several, when the row after them links past them to a row still in the log);
- **reordered**: its link names a row that comes *after* it by id (rows moved, ids swapped),
  however far ahead (looked up by its hash past the rows read ahead);
- **deleted**: its link names a row that is no longer in the log (or that was rewritten with a
  new hash of its own: with no id missing in between, that is what happened), and it gives its
  own hash, or would under a higher id (the rows after the deleted ones were renumbered to
  close the gap); one that does not was **edited** (its hash covers its link and its id); a
  row whose hash matches another id and that still links to the row before it was
  renumbered (**edited**).

At the end, the chain must stop where ``audit_head`` (updated with every append) says:
a row after that one was **inserted** (whatever it links to: one that breaks the chain there is
told so too, not by the rules above), a log that ends before it had rows **deleted** at the
end, and a last row whose hash differs was rewritten (**edited**). Every append writes the
head's id and hash together, so a head whose id and hash name different rows (or a hash of an
empty log and a row id) was itself **edited**: its ``last_id`` alone changed, or the last rows
deleted with only its hash moved back; no row is named then.

The chain proves a change only against the rows themselves and ``audit_head``: someone who can
write the table can also recompute every hash after the change and move the head, delete the
last rows and move the head back to the row before them (both its columns), or empty both.
Keep a copy outside the database (``remediator audit export`` to a SIEM holds every row's
hash) to catch those too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Break", "ChainRow", "Link", "diagnose", "diagnose_end", "inserted_after_head"]


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One row as the verifier sees it: ``sound`` when its content gives its stored hash
    (computed over its own ``prev_hash``)."""

    id: int
    prev_hash: str
    hash: str
    sound: bool


@dataclass(frozen=True, slots=True)
class Link:
    """The row a broken row links to, found by its hash anywhere in the log: its ``id``, and
    ``next_id``, the id of the row after it (None at the end)."""

    id: int
    next_id: int | None


@dataclass(frozen=True, slots=True)
class Break:
    """The first change found: ``kind`` (edited, inserted, deleted, reordered), the row it is
    reported at, and a sentence that says what was found."""

    kind: str
    row_id: int | None
    reason: str


def diagnose(
    last_good: ChainRow | None,
    row: ChainRow,
    following: Sequence[ChainRow],
    before_last: ChainRow | None = None,
    *,
    head_id: int | None = None,
    first_after_head: int | None = None,
    linked: Link | None = None,
    renumbered_from: int | None = None,
) -> Break | None:
    """Whether ``row`` (the row after ``last_good`` by id; None: the first row) breaks the
    chain, and how, given the rows that follow it (as many as the caller read ahead) and the
    row before ``last_good`` (None when ``last_good`` is the first). ``head_id``: audit_head's
    last row, read in the rows' snapshot; a row past it that breaks the chain is told as
    inserted there (``inserted_after_head``, from ``first_after_head``, the first row past it
    when an earlier one was). ``linked``: the row ``row`` links to, found anywhere in the log
    (by its hash), when the caller looked it up: a link to a row farther ahead than it read,
    or to a row before ``last_good`` (past rows slipped in after it), is told from it.
    ``renumbered_from``: the id under which ``row``'s content gives its hash, when that is not
    its own (the caller tried the ids near it): the row was moved to another id."""
    expected = last_good.hash if last_good is not None else ""
    after = f"row {last_good.id}" if last_good is not None else "the start of the log"
    if row.prev_hash == expected and row.sound:
        return None
    if renumbered_from is not None and row.prev_hash == expected:
        return Break(
            "edited",
            row.id,
            f"row {row.id} was renumbered: it was appended as row {renumbered_from} (its hash"
            f" matches that id), after {after}, to which it still links",
        )
    if head_id is not None and row.id > head_id:
        # Past the head: the service never appended it, whatever it links to.
        first = first_after_head if first_after_head is not None else row.id
        return inserted_after_head(first, head_id)
    if last_good is not None and row.prev_hash == (before_last.hash if before_last else ""):
        # This row links past the one before it: that one was made up and slipped in, with a
        # link and hash good enough to pass by itself.
        return Break(
            "inserted",
            last_good.id,
            f"row {last_good.id} was inserted: row {row.id} after it links past it",
        )
    nxt = following[0] if following else None
    later = {r.hash: r for r in following}
    if row.prev_hash == expected:
        if nxt is not None and nxt.prev_hash == expected:
            return Break(
                "inserted",
                row.id,
                f"row {row.id} was inserted: row {nxt.id} after it links to {after}",
            )
        return Break(
            "edited", row.id, f"row {row.id} was edited: its content does not match its hash"
        )
    if row.prev_hash in later:
        moved = later[row.prev_hash]
        return Break(
            "reordered",
            row.id,
            f"row {row.id} is out of order: it was appended after row {moved.id}, which now"
            " comes after it",
        )
    if linked is not None and linked.id > row.id:
        # As above, for a row farther ahead than the rows read ahead.
        return Break(
            "reordered",
            row.id,
            f"row {row.id} is out of order: it was appended after row {linked.id}, which now"
            " comes after it",
        )
    if linked is not None and last_good is not None and linked.id < last_good.id:
        # It links past several rows to one still in the log: those were slipped in, with
        # links and hashes good enough to pass (one alone is told above, by before_last).
        first = linked.next_id if linked.next_id is not None else last_good.id
        return Break(
            "inserted",
            first,
            f"rows {first} to {last_good.id} were inserted: row {row.id} after them links"
            f" past them to row {linked.id}",
        )
    if nxt is not None and nxt.prev_hash == expected:
        return Break(
            "inserted", row.id, f"row {row.id} was inserted: row {nxt.id} after it links to {after}"
        )
    if renumbered_from is not None and renumbered_from > row.id:
        # Rows deleted, and the ids after them moved down so that no gap shows.
        return Break(
            "deleted",
            row.id,
            f"rows were deleted before row {row.id}, and the rows after them renumbered to close"
            f" the gap: row {row.id} was appended as row {renumbered_from} (its hash matches"
            f" that id) and links to a row that is not in the log (the last intact row is"
            f" {after})",
        )
    if not row.sound:
        # Its hash covers its link: the link was changed (and the hash was not), so this row
        # is the one edited; the row before it is intact, and no id missing in between says
        # that rows were deleted (the sequence leaves gaps of its own).
        return Break(
            "edited",
            row.id,
            f"row {row.id} was edited: it no longer links to {after}, and its hash, which"
            " covers its link, does not match",
        )
    if last_good is not None and row.id == last_good.id + 1:
        # No id in between for a deleted row to have had: the row before was rewritten, its
        # hash recomputed, and this one still names the old hash.
        return Break(
            "edited",
            last_good.id,
            f"row {last_good.id} was rewritten with a new hash: row {row.id} links to its old one",
        )
    return Break(
        "deleted",
        row.id,
        f"rows were deleted before row {row.id}: it links to a row that is not in the log"
        f" (the last intact row is {after})",
    )


def inserted_after_head(row_id: int, head_id: int | None) -> Break:
    """Row ``row_id`` comes after ``head_id``, the last row the service appended (audit_head,
    read in the same snapshot as the rows): the service never wrote it. Said so whatever the
    row links to: a copy of a genuine row put there links past the last one (which was named
    as inserted, though it is the service's) or to an earlier row that is still in the log
    (which was told as rows deleted)."""
    return Break(
        "inserted",
        row_id,
        f"row {row_id} was inserted after the last row the service appended (row {head_id})",
    )


def diagnose_end(
    last: ChainRow | None,
    head_id: int | None,
    head_hash: str,
    at_head: ChainRow | None,
    first_after_head: int | None,
    head_hash_row: int | None = None,
) -> Break | None:
    """Whether an intact chain ends where ``audit_head`` says (``head_id``, ``head_hash``):
    ``last`` is the chain's last row, ``at_head`` the row with the head's id (None when absent),
    ``first_after_head`` the first row id after the head's, if any, and ``head_hash_row`` the
    id of the row whose hash is the head's (None when no row has it).

    Every append writes the head's two columns together, so a head whose hash is one row's and
    whose id names another was changed: a head that names row 12 while holding row 10's hash
    (or an empty log's) is told, not read as "the chain ends where the head says"."""
    last_hash = last.hash if last is not None else ""
    last_id = last.id if last is not None else None
    if last_hash == head_hash and last_id == head_id:
        return None
    if last_hash == head_hash:
        if last_id is None:
            end = "an empty log"
            why = "its rows were deleted and the head's hash reset, or its last_id was changed"
        elif head_id is None or head_id < last_id:
            end, why = f"row {last_id}", "its last_id was changed"
        else:
            end = f"row {last_id}"
            why = f"rows after {end} were deleted and the head's hash moved back to it, or its"
            why += " last_id was changed"
        return _head_mismatch(head_id, end, f"where the chain ends: {why}")
    if at_head is not None and at_head.hash == head_hash and first_after_head is not None:
        return inserted_after_head(first_after_head, head_id)
    if at_head is None and head_id is not None and (last is None or last.id < head_id):
        end = f"row {last.id}" if last is not None else "no row at all"
        return Break(
            "deleted",
            head_id,
            f"rows were deleted at the end: the log ends at {end}, the service last appended"
            f" row {head_id}",
        )
    if head_hash_row is not None and head_hash_row != head_id:
        return _head_mismatch(
            head_id,
            f"row {head_hash_row}",
            f"though the chain goes on to row {last_id}: the head's hash was changed",
        )
    where = head_id if head_id is not None else last_id
    return Break(
        "edited",
        where,
        f"row {where}'s hash is not the one the service recorded last in audit_head: row"
        f" {where} was rewritten (its hash recomputed), or audit_head's hash was changed",
    )


def _head_mismatch(head_id: int | None, holds: str, why: str) -> Break:
    """audit_head names ``head_id`` as the last row appended but holds the hash of ``holds``
    (a row, or an empty log), ``why`` saying what that means: every append writes the two
    together. No row is named: the rows may all be intact (the head alone changed) or the
    last ones deleted with it."""
    names = f"row {head_id}" if head_id is not None else "no row"
    return Break(
        "edited",
        None,
        f"audit_head was edited: it names {names} as the last row the service appended but"
        f" holds the hash of {holds}, {why}",
    )
