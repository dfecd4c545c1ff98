"""Checks of setting values that need more than a type: words from a fixed list, namespace
lists and store URLs. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from pydantic import SecretStr

from receiver.model import NamespacePolicy
from remediations import names

__all__ = ["namespaces", "one_of", "split_list", "url_shape"]


def split_list(value: object) -> object:
    """Comma-separated text as a list of its non-empty, stripped parts; anything else as is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def one_of(value: object, choices: Sequence[str], aliases: Mapping[str, str]) -> object:
    """Text as one of ``choices``: stripped, lower-cased, an alias replaced by the choice it
    stands for; anything else as is (pydantic then checks its type). ValueError listing the
    choices."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    text = aliases.get(text, text)
    if text not in choices:
        raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
    return text


_DEFAULT_DENY = NamespacePolicy().deny


def url_shape(value: SecretStr | None, schemes: tuple[str, ...], what: str) -> SecretStr | None:
    """``value`` when it parses as a URL of one of ``schemes`` (the port, if any, a number).
    The message never quotes the URL: it may hold a password."""
    if value is None:
        return None
    text = value.get_secret_value().strip()
    try:
        parts = urlsplit(text)
        if parts.scheme not in schemes:
            raise ValueError(f"the scheme must be {' or '.join(f'{s}://' for s in schemes)}")
        if what == "Redis":
            _ = parts.port  # redis-py takes one host; a port that is no number is an error
    except ValueError as exc:
        raise ValueError(f"not a {what} URL: {exc}") from None
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
                raise ValueError(f"{item!r} is not a namespace name: {'; '.join(problems)}")
    return listed
