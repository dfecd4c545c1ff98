"""A run stored refused has one audit row, which says what three rows said before. Pure.

Most runs of a storm are refused by their guards (cooldown, target lock, rate) before they are
stored, and ``Store.create_run`` stores them refused in one statement. Up to stop 39 that
statement appended three audit rows: ``run.created`` (the alert, the plan, the steps as stored,
``not_run``), ``run.refused`` (the guard, its reason, when it may pass) and, when the rule
announces refusals but nothing was sent (no channel, or the refusal folded into its digest
window), ``run.announced``. Each row cost its chain link, its hash, its heap tuple and two
index entries: 9.7 of a refused event's 41.6 WAL records, and most of the audit seal's CPU at
COMMIT (issue 12). Now the ``run.created`` row of a run stored refused carries the other two
in its data, under ``refused`` (the ``run.refused`` data) and ``announced`` (the
``run.announced`` data, when there was one); nothing else is appended for it.

Readers that go by kind (the review's timelines, a rule test's announced moments, whether a
moment was announced already) read such a row as the rows it stands for (``unfold``), so they
show the same facts for either form. Rows written the old way (before this change, and by a
replica not yet updated during a rolling update) are read as they are; a replica not yet
updated reads a new row as a run created (its ``run.created`` branch ignores keys it does not
know) and shows the refusal from the run's own columns, which both forms write. The chain
hashes whatever a row's data holds, so ``remediator audit verify`` checks both forms alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ANNOUNCED_KEY", "CREATED", "REFUSED_KEY", "unfold"]

# The kind of the row a run's creation appends.
CREATED = "run.created"
# The keys of a refused run's run.created data that hold its refusal and its announcement.
REFUSED_KEY = "refused"
ANNOUNCED_KEY = "announced"

# The kind each folded key stands for, in the order the old form appended them.
_FOLDED = ((REFUSED_KEY, "run.refused"), (ANNOUNCED_KEY, "run.announced"))


def unfold(kind: str, data: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The rows (kind, data) that one audit row stands for, oldest first: a ``run.created``
    row with a ``refused`` object is that row without its folded keys, then ``run.refused``
    with the ``refused`` object, then ``run.announced`` with the ``announced`` object when
    it holds one; any other row is itself alone. A folded key that is not an object (only an
    edit of the table writes one) is left in the row, unfolded, for the reader to show as
    it stands."""
    if kind != CREATED or not isinstance(data.get(REFUSED_KEY), Mapping):
        return [(kind, data)]
    created = dict(data)
    rows: list[tuple[str, Mapping[str, Any]]] = [(CREATED, created)]
    for key, folded_kind in _FOLDED:
        folded = data.get(key)
        if isinstance(folded, Mapping):
            del created[key]
            rows.append((folded_kind, folded))
    return rows
