"""The one home of the name rules that targets and action params are checked against. Pure.

The DNS-1123 and environment-variable rules are Kubernetes' own, from
``k8s.io/apimachinery/pkg/util/validation/validation.go`` (``IsDNS1123Label``,
``IsDNS1123Subdomain``, ``IsEnvVarName``; checked against v0.36.3): the same regular
expressions, the same length limits, and the same order of checks, so a name accepted here is
one the API server accepts. Go's ``regexp`` anchors ``^...$`` at the very ends of the text;
Python's ``$`` also matches before a trailing newline, hence ``fullmatch`` throughout.

Each rule comes as ``<rule>_errors(value) -> list[str]`` (empty when valid, in Kubernetes'
wording) and ``is_<rule>(value) -> bool``.
"""

from __future__ import annotations

import re

__all__ = [
    "CONNECTION_NAME_MAX_LENGTH",
    "DNS1123_LABEL_MAX_LENGTH",
    "DNS1123_SUBDOMAIN_MAX_LENGTH",
    "connection_name_errors",
    "dns1123_label_errors",
    "dns1123_subdomain_errors",
    "env_var_name_errors",
    "is_connection_name",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_env_var_name",
    "is_label_selector",
]

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
CONNECTION_NAME_MAX_LENGTH = 63

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
# re.ASCII: without it `a-z` is still ASCII, but the flag documents that nothing else may match.
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT, re.ASCII)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT, re.ASCII)
_ENV_VAR_NAME = re.compile(_ENV_VAR_NAME_FMT, re.ASCII)
_CONNECTION_NAME = re.compile("[a-z][a-z0-9_]*", re.ASCII)
# Not a parser: the characters a label selector can be written with (keys, values, =, ==, !=,
# in/notin lists, !key). The API server parses the selector and answers 400 when it is bad;
# this only keeps anything else (quotes, semicolons, '&', '?') out of the query string. The
# spaces are the selector lexer's (apimachinery labels/selector.go isWhitespace): Python's \s
# also took \v, \f, \x1c-\x1f and Unicode spaces, which it reads as part of a name.
_LABEL_SELECTOR = re.compile(r"[A-Za-z0-9_./\-=!,() \t\r\n]+")

_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_ENV_VAR_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', "
    "'-', or '.', and must not start with a digit"
)


def _max_len(length: int) -> str:
    return f"must be no more than {length} characters"


def dns1123_label_errors(value: str) -> list[str]:
    """Kubernetes' ``IsDNS1123Label``: at most 63 of ``a-z``, ``0-9``, ``-``; alphanumeric at
    both ends. Namespaces and container names are labels."""
    errors = []
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        errors.append(_max_len(DNS1123_LABEL_MAX_LENGTH))
    if _DNS1123_LABEL.fullmatch(value) is None:
        if _DNS1123_SUBDOMAIN.fullmatch(value) is not None:
            errors.append("must not contain dots")
        else:
            errors.append(_LABEL_MSG)
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Kubernetes' ``IsDNS1123Subdomain``: at most 253 characters, dot-separated labels (each
    label as in ``dns1123_label_errors`` but without its own length limit). Object names of
    Deployments, StatefulSets, DaemonSets and Pods are subdomains."""
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(_max_len(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if _DNS1123_SUBDOMAIN.fullmatch(value) is None:
        errors.append(_SUBDOMAIN_MSG)
    return errors


def env_var_name_errors(value: str) -> list[str]:
    """Kubernetes' ``IsEnvVarName`` (the strict rule; the API server may be configured with the
    relaxed one, which accepts more): letters, digits, ``_``, ``-``, ``.``, not starting with a
    digit, and not ``.``, ``..`` or ``..``-prefixed (Kubernetes' ``hasChDirPrefix``)."""
    errors = []
    if _ENV_VAR_NAME.fullmatch(value) is None:
        errors.append(_ENV_VAR_MSG)
    if value == ".":
        errors.append("must not be '.'")
    elif value == "..":
        errors.append("must not be '..'")
    elif value.startswith(".."):
        errors.append("must not start with '..'")
    return errors


def connection_name_errors(value: str) -> list[str]:
    """Our rule, not Kubernetes': the name of something configured in the service (a PostgreSQL
    or Redis connection, an HTTP endpoint, a Redis queue). A lowercase letter, then lowercase
    letters, digits or ``_``, at most 63: it maps one-to-one onto an environment variable name
    (``orders`` -> ``..._ORDERS_...``), which ``-`` would not."""
    errors = []
    if len(value) > CONNECTION_NAME_MAX_LENGTH:
        errors.append(_max_len(CONNECTION_NAME_MAX_LENGTH))
    if _CONNECTION_NAME.fullmatch(value) is None:
        errors.append(
            "must start with a lowercase letter and consist of lowercase letters, digits or '_'"
        )
    return errors


def is_dns1123_label(value: str) -> bool:
    return not dns1123_label_errors(value)


def is_dns1123_subdomain(value: str) -> bool:
    return not dns1123_subdomain_errors(value)


def is_env_var_name(value: str) -> bool:
    return not env_var_name_errors(value)


def is_connection_name(value: str) -> bool:
    return not connection_name_errors(value)


def is_label_selector(value: str) -> bool:
    """Written only with the characters of a label selector (see ``_LABEL_SELECTOR``): a screen
    for hostile text, not a parse; the API server rejects a malformed selector itself."""
    return _LABEL_SELECTOR.fullmatch(value) is not None
