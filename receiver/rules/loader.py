"""The rule files on disk: the only module of ``receiver.rules`` that reads files.

``load_rules`` and ``lint`` read a directory and hand the text to the pure compiler.
``RuleHolder`` keeps the rule set in force, and the texts it was compiled from, and reloads it;
``RuleWatcher`` reloads it when the files change (SIGHUP is wired to ``RuleHolder.reload`` by
the service).
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from receiver.model import NamespacePolicy
from receiver.rules.compile import compile_files
from receiver.rules.errors import RuleError, RuleSetError, in_file_order
from receiver.rules.file_encoding import NotUtf8, decode_rule_file
from receiver.rules.model import RuleSet
from remediations.base import Registry

__all__ = [
    "MAX_FILE_BYTES",
    "RuleHolder",
    "RuleWatcher",
    "Snapshot",
    "check",
    "lint",
    "load_rules",
    "read_rule_bytes",
    "snapshot",
]

_SUFFIXES = (".yaml", ".yml")

# A rule (or rule test) file larger than this is refused unparsed: PyYAML composes a few
# hundred KB a second, so a 10 MB file took 40 s and 450 MB before MAX_NODES (yaml_lines)
# refused it. 4 MiB is over 2,000 rules as the shipped ones are written, more than MAX_NODES
# lets one file hold; several files each get their own bound.
MAX_FILE_BYTES = 4 * 2**20


def read_rule_bytes(path: Path) -> bytes:
    """The bytes of a rule or rule test file, reading no more than ``MAX_FILE_BYTES`` + 1.
    Raises OSError as reading does, and one (EFBIG) saying what to do for a larger file."""
    with path.open("rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(
            errno.EFBIG,
            f"larger than {MAX_FILE_BYTES // 2**20} MiB: split its rules over several files",
        )
    return data


def _read_directory(
    directory: Path,
) -> tuple[dict[str, str], list[RuleError], list[RuleError]]:
    """(the text of each rule file by path, errors, warnings). A ``*.yaml`` entry that is a
    link to nothing is skipped with a warning: a Kubernetes ConfigMap update removes a key's
    link a moment after the data it pointed to, and failing that reload would keep the older
    rules for nothing; skipped without a word, as before, a rule vanished unseen. Any other
    entry that is not a regular file (a directory, a device, a pipe) is an error."""
    if not directory.exists():
        missing = f"rules directory does not exist{_looked_in(directory)}"
        return {}, [RuleError(str(directory), 0, missing)], []
    if not directory.is_dir():
        # A file named here (`remediator lint rules/a.yaml`) is read with the rules beside it,
        # as the service loads them: say which directory to give, not only what is wrong.
        hint = (
            f": give the directory that holds it ({directory.parent})"
            if directory.is_file()
            else ""
        )
        return {}, [RuleError(str(directory), 0, f"rules path is not a directory{hint}")], []
    # Only top-level files: a Kubernetes ConfigMap mount also holds `..data` and timestamped
    # directories with the same files, and editors leave dot-files behind.
    paths: list[Path] = []
    errors: list[RuleError] = []
    warnings: list[RuleError] = []
    for p in sorted(directory.iterdir()):
        if p.suffix not in _SUFFIXES or p.name.startswith("."):
            continue
        if p.is_file():
            paths.append(p)
        elif p.is_symlink() and not p.exists():
            skipped = "a link to a file that does not exist: skipped, its rules are not loaded"
            warnings.append(RuleError(str(p), 0, skipped, warning=True))
        else:
            errors.append(RuleError(str(p), 0, "not a regular file"))
    if not paths and not errors:
        problem = "no *.yaml or *.yml rule files in directory"
        return {}, [RuleError(str(directory), 0, problem)], warnings
    files: dict[str, str] = {}
    for path in paths:
        try:
            files[str(path)] = decode_rule_file(read_rule_bytes(path))
        except NotUtf8 as exc:
            errors.append(RuleError(str(path), exc.line, exc.message))
        except OSError as exc:
            errors.append(RuleError(str(path), 0, f"cannot read: {exc.strerror or exc}"))
    return files, errors, warnings


def _looked_in(directory: Path) -> str:
    """Where a relative ``directory`` was looked for: the working directory, which the bare
    ``rules: rules directory does not exist`` did not say (a service started from another
    directory than the clone's said only that)."""
    if directory.is_absolute():
        return ""
    return f" (looked for in the working directory, {Path.cwd()})"


def _load(
    directory: Path,
    registry: Registry,
    policy: NamespacePolicy,
    channels: Collection[str] | None,
) -> tuple[RuleSet | None, list[RuleError], list[RuleError]]:
    """(the rule set or None, errors, warnings)."""
    return _compiled(*_read_directory(directory), directory, registry, policy, channels)


def _compiled(
    files: Mapping[str, str],
    errors: list[RuleError],
    skipped: list[RuleError],
    directory: Path,
    registry: Registry,
    policy: NamespacePolicy,
    channels: Collection[str] | None,
) -> tuple[RuleSet | None, list[RuleError], list[RuleError]]:
    """``files`` (path -> text) compiled, beside what reading them found (``errors``,
    ``skipped``: ``_read_directory``'s): (the rule set or None, errors, warnings)."""
    if not files and errors:
        return None, in_file_order(errors), skipped
    try:
        ruleset = compile_files(files, registry, policy, channels=channels)
    except RuleSetError as exc:
        # A file that could not be read is reported beside the others' errors, in file order.
        return None, in_file_order([*errors, *exc.errors]), in_file_order([*skipped, *exc.warnings])
    except Exception as exc:
        # A fault of ours on some input (a reader's error that escaped, say) is a failed load
        # like any other, said where the user looks: raised from a reload, it had stopped the
        # rules watcher for good, silently, with the metric still saying the last reload passed.
        problem = f"could not load the rules ({type(exc).__name__}: {exc}); please report this"
        return None, in_file_order([*errors, RuleError(str(directory), 0, problem)]), skipped
    warnings = in_file_order([*skipped, *ruleset.warnings])
    if errors:
        return None, in_file_order(errors), warnings
    if skipped:
        # The rule set carries its warnings to where a reload logs them.
        ruleset = RuleSet(ruleset.rules, ruleset.source, warnings)
    return ruleset, [], warnings


def load_rules(
    directory: Path,
    registry: Registry,
    policy: NamespacePolicy,
    *,
    channels: Collection[str] | None = None,
) -> RuleSet:
    """Every ``*.yaml``/``*.yml`` file of ``directory``. Raises RuleSetError with all errors.
    ``channels``: the configured notify channels the rules may name (None: not checked;
    ``receiver.rules.steps.check_channel``)."""
    ruleset, errors, warnings = _load(directory, registry, policy, channels)
    if ruleset is None:
        raise RuleSetError(errors, warnings)
    return ruleset


def lint(directory: Path, registry: Registry, policy: NamespacePolicy) -> list[RuleError]:
    """Every error in ``directory``'s rule files; empty when they load."""
    return _load(directory, registry, policy, None)[1]


def check(
    directory: Path,
    registry: Registry,
    policy: NamespacePolicy,
    *,
    channels: Collection[str] | None = None,
) -> tuple[RuleSet | None, list[RuleError], list[RuleError]]:
    """``directory``'s rules: (the rule set, or None when there are errors; the errors; the
    warnings), each list in file order. What ``remediator lint`` shows; ``channels`` as
    ``load_rules`` takes them."""
    return _load(directory, registry, policy, channels)


class RuleHolder:
    """The rule set in force, and the texts of the files it was compiled from. A failed reload
    keeps the last good set, so a typo pushed to a running service degrades to "old rules"
    rather than "no rules".

    Construction loads the rules from ``directory``, or compiles ``files`` (path -> text: a
    worker process starts on the texts ``serve`` runs on, whatever the directory holds now),
    and raises RuleSetError when they are invalid; ``reload`` reads ``directory`` again, or
    compiles the ``files`` it is given.
    ``reload`` may be called from any thread (the watcher runs it in one). ``channels``: the
    configured notify channels, checked at every load (``load_rules``): a rule naming another
    one fails the start, or the reload (the rules in force stay).
    """

    def __init__(
        self,
        directory: Path,
        registry: Registry,
        policy: NamespacePolicy,
        *,
        ruleset: RuleSet | None = None,
        channels: Collection[str] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> None:
        self._directory = directory
        self._registry = registry
        self._policy = policy
        self._channels = channels
        # Serialises reloads so a slow, older reload cannot overwrite a newer one's result.
        self._lock = threading.Lock()
        self._last_errors: tuple[RuleError, ...] = ()
        self._fixed = ruleset is not None
        # What else a new rule set must satisfy to be swapped in (messages of what it leaves
        # wrong; none: it may): the approvers' by_rule naming only loaded rules. Set by the
        # service once the files that depend on the rules are read.
        self.check: Callable[[RuleSet], Sequence[str]] = lambda _: ()
        if ruleset is not None:
            self._in_force: tuple[RuleSet, dict[str, str]] = (ruleset, {})
            return
        # At start-up there is nothing to fall back to: invalid rules fail the start.
        loaded, errors, warnings, texts = self._compile(files)
        if loaded is None:
            raise RuleSetError(errors, warnings)
        self._in_force = (loaded, texts)

    @classmethod
    def fixed(cls, ruleset: RuleSet, registry: Registry, policy: NamespacePolicy) -> RuleHolder:
        """A holder of a rule set compiled elsewhere (a rule test's ``rule_files``), which
        ``reload`` keeps: there is no directory to read again. Its ``files`` are empty."""
        return cls(Path("."), registry, policy, ruleset=ruleset)

    @property
    def current(self) -> RuleSet:
        """The rule set in force."""
        return self._in_force[0]

    @property
    def files(self) -> Mapping[str, str]:
        """The texts the rule set in force was compiled from, by file path (as
        ``RuleSet.source`` names them): what a worker process is handed to start on."""
        return self._in_force[1]

    @property
    def last_errors(self) -> tuple[RuleError, ...]:
        """Errors of the latest reload; non-empty means the service runs on older rules."""
        return self._last_errors

    def reload(self, files: Mapping[str, str] | None = None) -> list[RuleError]:
        """Load the directory again, or compile ``files`` (path -> text: a worker process
        reloads the texts ``serve`` runs on); swap the set in only when it is valid. Returns
        the errors."""
        if self._fixed:
            return []
        with self._lock:
            ruleset, errors, _, texts = self._compile(files)
            if ruleset is not None:
                # Valid on their own, but leaving a setting wrong (a by_rule key orphaned by a
                # renamed rule would let the wider by_risk list decide): a failed reload too.
                errors = [RuleError(str(self._directory), 0, p) for p in self.check(ruleset)]
                if errors:
                    ruleset = None
            self._last_errors = tuple(errors)
            if ruleset is not None:
                # One reference assignment: readers see the old set and its texts or the new
                # ones, never a mix.
                self._in_force = (ruleset, texts)
            return errors

    def _compile(
        self, files: Mapping[str, str] | None
    ) -> tuple[RuleSet | None, list[RuleError], list[RuleError], dict[str, str]]:
        """``files`` compiled, or the directory's when None: (the rule set or None, errors,
        warnings, the texts compiled)."""
        if files is None:
            texts, read_errors, skipped = _read_directory(self._directory)
        else:
            texts, read_errors, skipped = dict(files), [], []
        ruleset, errors, warnings = _compiled(
            texts,
            read_errors,
            skipped,
            self._directory,
            self._registry,
            self._policy,
            self._channels,
        )
        return ruleset, errors, warnings, texts


# -- watching the directory ----------------------------------------------------------------------
# Polling rather than inotify: it works the same on a ConfigMap volume, whose files are swapped
# through a symlink (``..data``) that inotify on the files themselves does not see.

Snapshot = tuple[tuple[str, int, int], ...]


def snapshot(directory: Path) -> Snapshot:
    """Name, mtime (ns) and size of every rule file; any difference means "reload"."""
    entries = []
    try:
        paths = sorted(directory.iterdir())
    except OSError:
        return ()
    for path in paths:
        if path.name.startswith(".") or path.suffix not in _SUFFIXES:
            continue
        try:
            st = path.stat()  # follows the ConfigMap symlinks to the real file
        except OSError:
            continue
        entries.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(entries)


class RuleWatcher:
    """Reloads ``holder`` when the rule files in ``directory`` change, and passes the reload's
    errors (empty on success) to ``on_reload``."""

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
        """Check every ``interval_s`` seconds until cancelled; the check runs in a thread,
        since reading and compiling the files would otherwise block the event loop."""
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.check)
