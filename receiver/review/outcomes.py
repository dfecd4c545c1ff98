"""How run outcomes read in a review: the category each falls in, its words, its tone.

A category answers the reviewer's question "did it work?": ``verified`` (the alert resolved
after the steps ran), ``failed``, ``succeeded`` (steps ran, nothing to verify),
``resolved_before_action`` (steps ran, but the alert had resolved before the first acted: a
``succeeded`` run whose verify_result says so; neither a success nor a failure of the rule),
``refused`` (a
guard or a precondition said no), ``dry_run``, the three ends of an approval that did not come
(``rejected``, ``expired``, ``cancelled``), ``in_progress``, and ``other``. Outcomes this
version does not know fall in ``other`` and are shown by their own name: never an error.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACTED",
    "CATEGORIES",
    "Presentation",
    "approval_bucket",
    "category",
    "present",
]

# Outcome -> category. "resolved" is today's name of a verified run ("verified" a newer one).
_CATEGORY = {
    "resolved": "verified",
    "verified": "verified",
    "succeeded": "succeeded",
    "failed": "failed",
    "refused": "refused",
    "dry_run": "dry_run",
    "rejected": "rejected",
    "expired": "expired",
    "cancelled": "cancelled",
    "pending": "in_progress",
    "running": "in_progress",
    "awaiting_approval": "in_progress",
    "verifying": "in_progress",
}

# In the order reports list them.
CATEGORIES = (
    "verified",
    "failed",
    "succeeded",
    "resolved_before_action",
    "refused",
    "rejected",
    "expired",
    "cancelled",
    "dry_run",
    "in_progress",
    "other",
)

# The runs whose steps ran: the ones that say whether a rule works (verified % and failed % are
# of these; a refused, dry-run or unapproved run did nothing to judge, and one whose alert
# resolved before its steps acted says nothing of them).
ACTED = frozenset({"verified", "failed", "succeeded"})

_WORDS = {
    "verified": "verified: the alert resolved",
    "failed": "failed",
    "succeeded": "succeeded (nothing to verify)",
    "resolved_before_action": "succeeded, not verified: the alert resolved before the steps acted",
    "refused": "refused",
    "dry_run": "dry-run: nothing was changed",
    "rejected": "rejected by an approver",
    "expired": "approval expired",
    # Not only the alert's resolution cancels a run: an operator's drop of the job it waited
    # on does too (store/job_ends.py). The run's error, shown beside these words, says which.
    "cancelled": "cancelled",
    "in_progress": "in progress",
}

_TONE = {
    "verified": "good",
    "succeeded": "good",
    "resolved_before_action": "neutral",
    "failed": "bad",
    "refused": "warn",
    "rejected": "warn",
    "expired": "warn",
    "cancelled": "neutral",
    "dry_run": "neutral",
    "in_progress": "neutral",
    "other": "neutral",
}


@dataclass(frozen=True, slots=True)
class Presentation:
    """How one outcome is shown: its ``category``, a short ``label`` (the outcome's own name),
    a sentence ``words`` and a ``tone`` (good, bad, warn, neutral) for styling."""

    outcome: str
    category: str
    label: str
    words: str
    tone: str


# The verify_result of a run resolved before its steps acted: its category is its own.
_EARLY = "resolved_before_action"


def category(outcome: str, verify_result: str | None = None) -> str:
    """The category of ``outcome`` (``other`` for one this version does not know);
    ``resolved_before_action`` for a ``succeeded`` run whose ``verify_result`` says so."""
    if outcome == "succeeded" and verify_result == _EARLY:
        return _EARLY
    return _CATEGORY.get(outcome, "other")


def present(outcome: str, verify_result: str | None = None) -> Presentation:
    """How ``outcome`` (with the run's ``verify_result``) reads; an unknown one reads as
    itself, neutrally."""
    found = category(outcome, verify_result)
    label = outcome.replace("_", " ") or "unknown"
    words = _WORDS.get(found, label)
    if found == "in_progress":
        words = f"in progress ({label})"
    return Presentation(outcome, found, label, words, _TONE[found])


# Approval state -> the bucket the effectiveness table counts it in.
_APPROVAL_BUCKETS = {
    "approved": "granted",
    # Granted, then the target changed before the step ran: the engineer still said yes.
    "superseded": "granted",
    "rejected": "rejected",
    "expired": "expired",
    "cancelled": "cancelled",
    "pending": "pending",
}


def approval_bucket(state: str) -> str:
    """``granted``, ``rejected``, ``expired``, ``cancelled``, ``pending`` or ``other``."""
    return _APPROVAL_BUCKETS.get(state, "other")
