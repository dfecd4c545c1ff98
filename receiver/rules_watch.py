"""Reload the rules when their files change, as well as on SIGHUP.

Polling rather than inotify: it works the same on a ConfigMap volume, whose files are swapped
through a symlink (``..data``) that inotify on the files themselves does not see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from receiver.rules import RuleError, RuleHolder

Snapshot = tuple[tuple[str, int, int], ...]


def snapshot(directory: Path) -> Snapshot:
    """Name, mtime and size of every rule file; any difference means "reload"."""
    entries = []
    try:
        paths = sorted(directory.iterdir())
    except OSError:
        return ()
    for path in paths:
        if path.name.startswith(".") or path.suffix not in (".yaml", ".yml"):
            continue
        try:
            st = path.stat()  # follows the ConfigMap symlinks to the real file
        except OSError:
            continue
        entries.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(entries)


class RuleWatcher:
    def __init__(
        self,
        holder: RuleHolder,
        directory: Path,
        on_reload: Callable[[list[RuleError]], None],
    ) -> None:
        self._holder = holder
        self._directory = directory
        self._on_reload = on_reload
        self._seen = snapshot(directory)

    def check(self) -> bool:
        """Reload if the files changed since the last check; True when a reload happened."""
        current = snapshot(self._directory)
        if current == self._seen:
            return False
        self._seen = current
        self._on_reload(self._holder.reload())
        return True

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.check)
