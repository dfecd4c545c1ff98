"""Which ``REMEDIATOR_*`` environment variables may be set: the settings' own, and the
development tools' (hack/*/build.sh, the Makefile, tests/support), which share the prefix. Any
other is a typo (``REMEDIATOR_DRYRUN``): refused at start-up like an unknown YAML key, since
the setting it meant would otherwise keep its default (a dry-run switched off). Pure."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

__all__ = [
    "ENV_PREFIX",
    "FOREIGN_PREFIXES",
    "FOREIGN_VARIABLES",
    "typo_of",
    "unknown_variables",
]

ENV_PREFIX = "REMEDIATOR_"

# Variables of the prefix that belong to the development tools, not to the service.
FOREIGN_VARIABLES = frozenset(
    ENV_PREFIX + name
    for name in (
        "CONFIG",  # remediator --config
        "CACHE_DIR",
        "CONTROLPLANE_BIN",
        "CONTROLPLANE_KEEP",
        "KUBECTL",
        "GOMODCACHE",
        "GOCACHE",
        "AMORACLE",
        "ALERTMANAGER",
        "CHROMIUM",
    )
)
FOREIGN_PREFIXES = (ENV_PREFIX + "TEST_",)


def unknown_variables(names: Iterable[str], settings: Collection[str]) -> list[str]:
    """A message per ``REMEDIATOR_*`` name in ``names`` that is neither one of ``settings``
    (the settings' variables) nor a development tool's, sorted, naming the setting's variable
    it is a typo of when there is one (``typo_of``): ``REMEDIATOR_DRYRUN: unknown setting (did
    you mean REMEDIATOR_DRY_RUN?)``."""
    found = []
    for name in sorted(names):
        if not name.startswith(ENV_PREFIX) or name in settings or name in FOREIGN_VARIABLES:
            continue
        if name.startswith(FOREIGN_PREFIXES):
            continue
        close = typo_of(name, settings)
        hint = f" (did you mean {close}?)" if close else ""
        found.append(f"{name}: unknown setting{hint}")
    return found


def typo_of(name: str, known: Collection[str]) -> str | None:
    """The name in ``known`` that ``name`` is plausibly a typo of, or None: a variable's name,
    or a settings file's key by its path (``http.prot``). Names are compared word by word (the
    words between underscores and dots): a typo keeps the words and misspells some
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
    """The words of a variable's name or a YAML key's path (``http.max_body_bytes``)."""
    return re.split(r"[._]", name.removeprefix(ENV_PREFIX))


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
