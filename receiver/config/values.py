"""Checks of setting values that need more than a type: durations (sizes: ``sizes``), words
from a fixed list, namespace lists, Slack team ids and store URLs. Pure."""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, SecretStr, ValidationInfo

from receiver import durations
from receiver.config.redact import misread, redacted
from receiver.model import NamespacePolicy
from receiver.text import has_lone_surrogate, shown
from receiver.typos import plausible_key
from remediations import names

__all__ = [
    "EMPTY_HOST",
    "MAX_VALUE_CHARS",
    "NOT_UTF8",
    "NUL_REFUSED",
    "WRITTEN",
    "SettingPath",
    "duration",
    "duration_or_off",
    "escaped",
    "host_problem",
    "namespaces",
    "one_of",
    "plausible_key",
    "slack_team_ids",
    "split_list",
    "unknown_key",
    "unknown_key_error",
    "unstorable_keys",
    "url_shape",
    "written",
]

# The validation context load_settings() gives: the values were written by a user (YAML, a
# variable), so a unit-less number is refused rather than read as seconds. Settings built in
# code (tests, defaults) have no such context: their numbers are seconds.
WRITTEN: Mapping[str, bool] = MappingProxyType({"written": True})


def written(info: ValidationInfo) -> bool:
    """True when the value being validated was written by a user (``WRITTEN``)."""
    return isinstance(info.context, Mapping) and info.context.get("written") is True


def duration(
    value: object,
    bounds: tuple[float, float],
    *,
    written: bool,
    spelled: Mapping[float, str],
) -> float:
    """Seconds from a duration setting, within ``bounds`` (seconds, both ends included).

    Text is Prometheus' notation, stripped like every other setting's text (a variable from a
    shell or an env file). A number is seconds only from Python (``written`` False: the field's
    name says seconds); a user's unit-less number (YAML's ``ttl: 30``) is refused, saying to
    add the unit. ValueError naming the value, and the bounds as durations (``spelled`` names
    the long ones, e.g. "a year").
    """
    if isinstance(value, str):
        seconds = durations.parse_duration(value.strip())
    elif isinstance(value, int | float) and not isinstance(value, bool) and not written:
        seconds = float(value)
    else:
        seconds = durations.parse_duration(value)
    shortest, longest = bounds
    if not shortest <= seconds <= longest:

        def spell(bound: float) -> str:
            return spelled.get(bound) or durations.format_duration(bound)

        raise ValueError(
            f"{shown(value)} is out of range: give a duration between {spell(shortest)} and "
            f"{spell(longest)}"
        )
    return seconds


def duration_or_off(value: object, bounds: tuple[float, float], *, written: bool) -> float:
    """Seconds from a duration setting that can be turned off: ``off`` or a zero duration
    (``0s``) is 0.0; anything else is a duration within ``bounds`` (``duration``), else
    ValueError naming the value, the bounds and ``off``. YAML reads a bare ``off`` as false:
    that is off too."""
    if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return 0.0
    shortest, longest = bounds
    seconds = duration(value, (0.0, float("inf")), written=written, spelled={})
    if seconds != 0.0 and not shortest <= seconds <= longest:
        raise ValueError(
            f"{shown(value)} is out of range: give a duration between "
            f"{durations.format_duration(shortest)} and {durations.format_duration(longest)}, "
            "or off"
        )
    return seconds


def split_list(value: object) -> object:
    """Comma-separated text as a list of its non-empty, stripped parts; anything else as is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A Slack workspace's id as Slack's payloads carry it (``team.id``): T and capitals or digits.
_SLACK_TEAM_ID = re.compile("T[A-Z0-9]+", re.ASCII)


def slack_team_ids(value: object) -> object:
    """Comma-separated text or a list of Slack team ids (``T0123ABCD``), as a list; anything
    else as is. ValueError naming an item that is no team id: a workspace's name or URL
    (``acme.slack.com``) would match no request, and every click would be refused."""
    listed = split_list(value)
    if isinstance(listed, list | tuple):
        for item in listed:
            if isinstance(item, str) and not _SLACK_TEAM_ID.fullmatch(item):
                raise ValueError(
                    f"{shown(item)} is not a Slack team id: give the workspace's id, like T0123ABCD"
                    " (its `team.id`), not its name or URL"
                )
    return listed


def one_of(value: object, choices: Sequence[str], aliases: Mapping[str, str]) -> object:
    """Text as one of ``choices``: stripped, lower-cased, an alias replaced by the choice it
    stands for; anything else as is (pydantic then checks its type). ValueError listing the
    choices."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    text = aliases.get(text, text)
    if text not in choices:
        raise ValueError(f"{shown(value)} is not one of {', '.join(choices)}")
    return text


_DEFAULT_DENY = NamespacePolicy().deny


def url_shape(value: SecretStr | None, schemes: tuple[str, ...], what: str) -> SecretStr | None:
    """``value`` when it parses as a URL of one of ``schemes`` (the port, if any, a number).
    The message never quotes the URL: it may hold a password."""
    if value is None:
        return None
    text = value.get_secret_value().strip()
    if (misreading := misread(what, text)) is not None:
        raise ValueError(misreading)
    try:
        parts = urlsplit(text)
        if parts.scheme not in schemes:
            raise ValueError(f"the scheme must be {' or '.join(f'{s}://' for s in schemes)}")
        if what == "Redis":
            _ = parts.port  # redis-py takes one host; a port that is no number is an error
    except ValueError as exc:
        raise ValueError(f"not a {what} URL: {redacted(str(exc), text)}") from None
    return SecretStr(text)


def namespaces(value: object, *, deny: bool) -> object:
    """A namespace list: comma-separated text or a YAML list of DNS-1123 labels. The deny list
    may not be left empty by accident (``REMEDIATOR_NAMESPACE_DENY=``): that would quietly let
    actions into kube-system; ``none`` (or ``[]`` in YAML) says so on purpose."""
    if deny and isinstance(value, str):
        if not split_list(value):
            raise ValueError(
                f"empty: that would let actions touch {', '.join(_DEFAULT_DENY)}; write 'none' "
                "to deny no namespace on purpose, or list the namespaces to deny"
            )
        if value.strip().lower() == "none":
            return ()
    listed = split_list(value)
    if isinstance(listed, list | tuple):
        for item in listed:
            if isinstance(item, str) and (problems := names.dns1123_label_errors(item)):
                raise ValueError(f"{shown(item)} is not a namespace name: {'; '.join(problems)}")
    return listed


# An empty listen address: asyncio binds "" to every interface, the opposite of the default.
EMPTY_HOST = (
    "empty: that would listen on every interface; write 0.0.0.0 (or ::) to listen on all of"
    " them on purpose, or an address (default 127.0.0.1)"
)


def host_problem(host: str, port_setting: str) -> str | None:
    """Why ``host`` is no listen address (``port_setting`` names where the port goes), or None.
    Written as a URL, in brackets or with its port, it got past the settings, the embedded
    servers started, and listening failed on ``[[::1]]:9095``: "Name or service not known"."""
    text = host.strip()
    if not text:
        return EMPTY_HOST
    if "://" in text:
        return f"{shown(host)} is a URL, not a URL's host: write the address alone (0.0.0.0, ::1)"
    if text.startswith("[") or text.endswith("]"):
        return f"{shown(host)}: write an IPv6 address without brackets ({text.strip('[]')})"
    name, colon, port = text.rpartition(":")
    if colon and port.isdigit() and port.isascii() and ":" not in name:
        return f"{shown(host)} holds a port: give the address alone, and the port as {port_setting}"
    return None


# What an empty path setting is told (``SettingPath``).
EMPTY_PATH = (
    "empty: give the path, or leave the setting out for its default (an empty path is the"
    " working directory)"
)


def _no_blank_path(value: object) -> object:
    """A path setting's value, refused when empty or blank: ``Path("")`` is ``.``, so
    ``REMEDIATOR_OPERATOR_TOKENS_DIR=`` (a template's variable left empty) read every file of
    the working directory as an operator's token, ``REMEDIATOR_APPROVAL_KEYS_DIR=`` as a link
    key, and ``REMEDIATOR_DATA_DIR=`` put the embedded servers and the tokens there. YAML's
    null reaches this only for a path that cannot be unset (``rules_dir:``), which pydantic
    told as "Input is not a valid path for <class 'pathlib.Path'>"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(EMPTY_PATH)
    return value


# A file or directory a setting names (every ``…_file``, ``…_dir``, the kubeconfig).
SettingPath = Annotated[Path, BeforeValidator(_no_blank_path)]

# What a value holding U+0000, or a byte that is not UTF-8, is told (``unstorable_keys``).
NUL_REFUSED = "the value contains a NUL character (U+0000), which is not allowed: remove it"
NOT_UTF8 = (
    "the value is not UTF-8 text (a byte that is not UTF-8, or a \\ud800-\\udfff escape, which "
    "UTF-8 cannot encode): write it in UTF-8"
)


# Longer than any URL, token, path or JSON map of connections: refused unquoted (a 10 MB value
# was quoted whole in its error, after seconds of validating it).
MAX_VALUE_CHARS = 65_536


def _problem(text: str) -> str | None:
    if len(text) > MAX_VALUE_CHARS:
        longest = f"{MAX_VALUE_CHARS:,}"
        return f"the value is {len(text):,} characters; no setting takes more than {longest}"
    if "\0" in text:
        return NUL_REFUSED
    return NOT_UTF8 if has_lone_surrogate(text) else None


def unstorable_keys(value: object, where: str) -> Iterator[tuple[str, str]]:
    """(key, problem) for each key (``where``, and below it ``where.name`` or ``where.0``
    inside maps and lists) whose string, or a map key, holds U+0000 or a lone surrogate, or is
    over ``MAX_VALUE_CHARS``. No
    value may: PostgreSQL cannot store U+0000, nothing encodes a surrogate, and the service
    writes what it was configured with (the host, a URL, the rules' directory) to its audit log
    once the stores are up, so the first row (or the rules' digest) failed after everything had
    started. The problem never quotes the value: it may be a secret."""
    if isinstance(value, str):
        if problem := _problem(value):
            yield where, problem
    elif isinstance(value, Mapping):
        for name, item in value.items():
            if problem := _problem(str(name)):
                yield f"{where} (a key under it)", problem
            else:
                yield from unstorable_keys(item, f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from unstorable_keys(item, f"{where}.{index}")


def escaped(part: object) -> str:
    """``part`` as text, each character that is not printable (a control character, a line
    separator, a format character) written as its Python escape (``\\x1b``): an error quoting
    a name of a file stays one line and moves no terminal's cursor."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(part)
    )


def _known_keys(model: type[BaseModel], path: Sequence[object]) -> list[str]:
    """The keys the part of ``model`` that ``path`` leads to takes (fields and map entries, as a
    pydantic error's location gives them); [] when it is not a model."""
    annotation: Any = model
    for part in path:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field is not None else None
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]  # ``part`` names an entry of the map
        else:
            annotation = None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        # Not the secrets filled from their *_file at load: no one writes those keys.
        return [name for name, field in annotation.model_fields.items() if not field.exclude]
    return []


def unknown_key(key: object, model: type[BaseModel], path: Sequence[object] = ()) -> str:
    """The message for ``key``, which the part of ``model`` that ``path`` leads to (fields and
    map entries, as a pydantic error's location gives them) does not take: the closest key
    when one is close, as unknown settings are told; else the keys it takes."""
    known = _known_keys(model, path)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key; this takes {', '.join(known)}" if known else "unknown key"


def unknown_key_error(
    where: str, loc: Sequence[object], model: type[BaseModel], *, named: int = 0
) -> str:
    """The error for the unknown key at ``loc`` (a pydantic error's location in ``model``: the
    fields and entries leading to it, then the key; the first ``named`` of them already said by
    ``where``, the setting or file): ``where.path.key: unknown key (did you mean 'x'?)`` as
    ``unknown_key`` tells it, when the key looks like one (``plausible_key``). Else the key is
    not shown, as the settings file does not show one: it may be a secret written where a key
    goes, or a line of another file. The path's parts are ``escaped``."""
    *path, key = loc
    parts = [*([where] if where else []), *(escaped(p) for p in path[named:])]
    if plausible_key([key]):
        return f"{'.'.join([*parts, str(key)])}: {unknown_key(key, model, path)}"
    known = _known_keys(model, path)
    takes = f"; this takes {', '.join(known)}" if known else ""
    at = ".".join(parts) or "file"
    return f"{at}: a key that is no key's name (not shown: a value written as a key?){takes}"
