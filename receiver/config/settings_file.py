"""The settings file read into its settings' YAML paths (``http.port``), and its errors.

``--config`` may name any file: one that is not a settings file at all (``/etc/shadow``) is
refused without echoing it. An error names the file and line, and quotes a key only when it
looks like one (``plausible_key``): the first line of /etc/shadow reads as a YAML key, and was
quoted whole, password hash included, in ``unknown setting``. Values are never quoted here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from receiver.config.files import read_settings_text
from receiver.config.settings import ConfigError
from receiver.config.values import plausible_key
from receiver.config.variables import typo_of
from receiver.rules.yaml_keys import KeyNotText
from receiver.rules.yaml_lines import (
    DuplicateKey,
    KeyPath,
    Located,
    parse_yaml,
    safe_load,
)
from receiver.rules.yaml_loaders import NotASetting

__all__ = ["plausible_key", "read_settings_file", "yaml_problem"]

# A quoted part of PyYAML's problem: a character (or its escape: '\\t') and a token's name
# ('<stream end>') are shown; other text (an anchor's, an alias's, a tag's name) is the file's.
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_TOKEN = re.compile(r"<[a-z ]+>")

Where = Callable[[Sequence[str]], str]


def read_settings_file(
    config_file: Path, known: Collection[str], words: dict[KeyPath, str] | None = None
) -> dict[str, Any]:
    """The settings of ``config_file`` by YAML path (keys of ``known``). ConfigError naming
    the file (and line) for a file that cannot be read, is not YAML, is not a mapping, or
    holds a key that is not a setting; a key is quoted only when ``plausible_key``. ``words``
    receives YAML 1.1's booleans written as another word than true or false (``on``), by
    path from the top of the file (``Located.words``), for errors that say to quote them."""
    text = read_settings_text(config_file)
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{config_file}:{mark.line + 1}" if mark is not None else str(config_file)
        raise ConfigError(f"{where}: {yaml_problem(exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{config_file}: the top level must be a mapping of settings")

    def key_at(parts: Sequence[str]) -> str:
        # Read again only on this error path, for the line of the key.
        located = Located(str(config_file))
        parse_yaml(text, located)
        return f"{config_file}:{located.line_of(parts)}"

    flat: dict[str, Any] = {}
    _flatten(data, (), known, flat, key_at)
    if words is not None and _has_boolean(data):
        located = Located(str(config_file))
        parse_yaml(text, located)  # read again only when a word may be one
        words.update(located.words)
    return flat


def _has_boolean(data: object) -> bool:
    if isinstance(data, bool):
        return True
    if isinstance(data, Mapping):
        return any(_has_boolean(v) for v in data.values())
    return isinstance(data, list) and any(_has_boolean(v) for v in data)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """``invalid YAML:`` and PyYAML's problem, its quoted text kept only when it is a
    character or a token's name; a key given twice is named when it is a plausible key (the
    settings file's and the approvers file's errors: either may be some other file, or hold a
    secret as a key). A value of no setting's kind (``NotASetting``: valid YAML) is told so, and
    so is a key YAML reads as a boolean or a number (``KeyNotText``), quoted when plausible."""
    if isinstance(exc, NotASetting):
        return str(exc.problem)
    if isinstance(exc, KeyNotText):
        # Valid YAML; its word is quoted as a key given twice is (every boolean word is one).
        if plausible_key([exc.word]):
            return str(exc.problem)
        return "keys must be strings: YAML reads this one as a number (not shown: no key's name)"
    return f"invalid YAML: {_problem(exc)}"


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, DuplicateKey):
        if plausible_key([exc.key]):
            return str(exc.problem)
        return f"a key is given twice (first at line {exc.first_line}; not shown: no key's name)"
    problem = str(getattr(exc, "problem", None) or exc)

    def shown(match: re.Match[str]) -> str:
        inner = match[1] if match[1] is not None else match[2]
        return match[0] if len(inner) <= 2 or _TOKEN.fullmatch(inner) else "'(not shown)'"

    return _QUOTED.sub(shown, problem)


def _flatten(
    data: Mapping[Any, Any],
    prefix: tuple[str, ...],
    known: Collection[str],
    out: dict[str, Any],
    where: Where,
) -> None:
    for name, value in data.items():
        parts = (*prefix, str(name))
        path = ".".join(parts)
        under = sorted(key for key in known if key.startswith(f"{path}."))
        if path in known:
            out[path] = value
        elif isinstance(value, Mapping) and (under or (value and not typo_of(path, known))):
            # A section, or a misspelt one whose settings say which they meant
            # (`aprovals: {keys_dir: k}`: approvals.keys_dir).
            _flatten(value, parts, known, out, where)
        elif under:
            if value is None:
                continue  # `http:` with nothing under it: an empty section, nothing set
            raise ConfigError(
                f"{where(parts)}: {path}: a section, not a value: write its settings under it"
                f" ({', '.join(under)})"
            )
        else:
            # A map under a misspelt setting that takes one (`notify: {channel: {oncall: ...}}`)
            # is named here, with the setting meant: named at its first key, the error said
            # `notify.channel.oncall.kind: unknown setting`, as if `kind` were wrong; an empty
            # one (`notify: {chanels: {}}`) was not named at all.
            raise ConfigError(_unknown(parts, known, where))


def _unknown(parts: tuple[str, ...], known: Collection[str], where: Where) -> str:
    """The error of the key at ``parts``, which is no setting: named with the setting it is a
    typo of, when it looks like a key (``plausible_key``), else not shown."""
    if not plausible_key(parts):
        return (
            f"{where(parts)}: a key that is no setting's name (not shown: is this a settings file?)"
        )
    path = ".".join(parts)
    close = typo_of(path, known)
    return f"{where(parts)}: {path}: unknown setting" + (
        f" (did you mean {close}?)" if close else ""
    )
