"""What an operator is told of a recorded field that cannot be read: a JSON column edited, in
the database, to hold what this service never writes there (``receiver.store.stored_json``
finds them). One wording for the review, the approval page and a step taken up again. Pure."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["unreadable_text"]


def unreadable_text(fields: Mapping[str, str]) -> str:
    """What is said of recorded fields that cannot be read (field -> why: only an edit of the
    table writes such a value), e.g. ``labels cannot be read: it was edited after it was
    written (the stored labels is a JSON list, not an object of strings)``; '' for none."""
    return "; ".join(
        f"{name} cannot be read: it was edited after it was written ({why})"
        for name, why in sorted(fields.items())
    )
