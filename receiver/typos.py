"""Which known name a mistyped one means: a variable, a settings file's key, a rule's param.
One rule for all, so every "did you mean ...?" the service prints is told the same way. Pure."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

__all__ = ["plausible_key", "typo_of"]


def typo_of(name: str, known: Collection[str]) -> str | None:
    """The name in ``known`` that ``name`` is plausibly a typo of, or None: a variable's name,
    a settings file's key by its path (``http.prot``), a rule's action param (``replicsa``).
    Names are compared word by word (the words between underscores and dots): a typo keeps the
    words and misspells some
    (``REMEDIATOR_PORTT``, ``REMEDIATOR_DATABASE_URI``: each word one edit away, two in a word of
    8 letters or more), or keeps the letters and drops or adds an underscore
    (``REMEDIATOR_DRYRUN``; one edit besides is allowed). The fewest edits win, then the name."""
    # difflib compared whole names and so suggested what merely shares letters:
    # REMEDIATOR_CONFIG_FILE -> REMEDIATOR_KUBECONFIG, REMEDIATOR_DEBUG -> REMEDIATOR_DRY_RUN,
    # REMEDIATOR_POSTGRES_URL -> REMEDIATOR_REDIS_URL. A hint that names another setting sends
    # the reader to set the wrong one; no hint is better than that.
    words = _words(name)
    best: tuple[int, str] | None = None
    for candidate in known:
        edits = _word_edits(words, _words(candidate))
        if edits is not None and (best is None or (edits, candidate) < best):
            best = (edits, candidate)
    return best[1] if best else None


def _words(name: str) -> list[str]:
    """The words of a variable's name or a YAML key's path (``http.max_body_bytes``): a
    variable's shared prefix is a word that matches itself, adding no edit."""
    return re.split(r"[._]", name)


def _word_edits(words: list[str], known: list[str]) -> int | None:
    """The edits that make ``words`` the ``known`` words, or None when they are too many for
    a typo (``typo_of``)."""
    if len(words) == len(known):
        edits = [_distance(word, right) for word, right in zip(words, known, strict=True)]
        if all(n <= (1 if len(right) < 8 else 2) for n, right in zip(edits, known, strict=True)):
            return sum(edits)
        return None
    joined = _distance("".join(words), "".join(known))
    return joined if joined <= 1 else None


def _distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) that make ``a`` into ``b``."""
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        earlier, before, row = before, row, [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            row[j] = min(before[j] + 1, row[j - 1] + 1, before[j - 1] + (x != y))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                row[j] = min(row[j], earlier[j - 2] + 1)
    return row[-1]


# A word of a key a file of this service takes: letters, `_` and `-`, a few digits, not first
# (every key is lowercase words and underscores; a typo may change the case). A token or a hash
# has more digits; a line of another file has a space or a colon.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")
_MAX_DIGITS = 3


def plausible_key(parts: Sequence[object]) -> bool:
    """True when the key path ``parts`` (``["http", "prot"]``) is short words a file of this
    service would hold (settings, approvers, rules, rule tests), and so may be quoted; False for
    a line of some other file read as a key, or a secret written where a key goes."""
    return 0 < len(parts) <= 6 and all(
        _WORD.fullmatch(str(p)) and sum(c.isdigit() for c in str(p)) <= _MAX_DIGITS for p in parts
    )
