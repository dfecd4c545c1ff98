"""The Kubernetes client's configuration, loaded from a kubeconfig or in-cluster credentials,
with a failure told in one line naming the setting: never a traceback, never the file's text.

kubernetes_asyncio (``config/kube_config.py``, ``config/incluster_config.py``) raises whatever
its YAML parser or its walk over the document meets: a PyYAML error, a ``TypeError`` for a file
that is no map (a token file named by mistake), a ``ConfigException`` for a missing key or a
failed ``exec`` credential plugin. ``serve`` ended with that traceback, exit 1. The messages
kept here are those that quote nothing of the file but its structure: a YAML error's problem
and line (not its snippet, which is the file's text), the loader's ``Invalid kube-config
file`` sentences (which name keys and entries). An exec plugin's own output is not shown: it
is that program's stderr, which may repeat the credential it was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from receiver.config import ConfigError, Settings, named
from receiver.config.files import PATH_NOT_SHOWN, path_shown

__all__ = ["check_kubeconfig_named", "load_kube_configuration"]

# The loader's own sentences about the document's shape: keys and entry names, no values.
_SHAPE = "Invalid kube-config file"


async def load_kube_configuration(settings: Settings, environ: Mapping[str, str]) -> Any:
    """A kubernetes_asyncio ``Configuration`` from ``settings.kubeconfig`` (else ``KUBECONFIG``,
    else ``~/.kube/config``), or in-cluster credentials when no kubeconfig is set and
    ``KUBERNETES_SERVICE_HOST`` is. Raises ConfigError naming the setting and the file, and why
    it could not be loaded, without quoting its content (module docstring)."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    if settings.kubeconfig is None and environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ConfigError(
                f"in-cluster credentials (KUBERNETES_SERVICE_HOST is set): cannot load them:"
                f" {_why(exc)}"
            ) from None
        return configuration
    path = (settings.kubeconfig or Path(environ.get("KUBECONFIG", "~/.kube/config"))).expanduser()
    try:
        await config.load_kube_config(config_file=str(path), client_configuration=configuration)
    except Exception as exc:
        setting = _setting(settings, environ)
        raise ConfigError(f"{setting}: cannot load the kubeconfig {path}: {_why(exc)}") from None
    return configuration


def check_kubeconfig_named(settings: Settings, environ: Mapping[str, str]) -> None:
    """ConfigError when a kubeconfig is set (``kubernetes.kubeconfig``, or ``KUBECONFIG``) and
    no file is there. It ran every Kubernetes step dry without a word but the banner's "no
    cluster credentials", and ``service.started`` wrote the value into the append-only audit
    log: a token pasted where the path goes stayed there for good. The path is shown only as
    ``config.files.path_shown`` allows."""
    path = settings.kubeconfig
    if path is None or path.expanduser().is_file():
        return
    setting = _setting(settings, environ)
    where = str(path) if path_shown(path.expanduser()) else PATH_NOT_SHOWN
    raise ConfigError(
        f"{setting}: no kubeconfig file at {where}: give the file, or leave the setting out to"
        " run Kubernetes steps dry"
    )


def _setting(settings: Settings, environ: Mapping[str, str]) -> str:
    """How an error names where the kubeconfig's path came from."""
    if settings.kubeconfig is None:
        return "the default kubeconfig (set kubernetes.kubeconfig, REMEDIATOR_KUBECONFIG)"
    if environ.get("KUBECONFIG", "").strip() and not environ.get("REMEDIATOR_KUBECONFIG"):
        return "KUBECONFIG"  # which wins over the settings file's (config.sources)
    return named("kubeconfig")


def _why(exc: Exception) -> str:
    """What went wrong, in words that quote no credential (module docstring)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}" if mark is not None else ""
        return f"it is not YAML ({exc.problem or exc.context}{at})"
    if isinstance(exc, yaml.YAMLError):
        return "it is not YAML"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    from kubernetes_asyncio.config import ConfigException

    message = str(exc)
    if isinstance(exc, ConfigException):
        if message.startswith(_SHAPE):
            return message
        if message.startswith("exec:"):
            # "exec: process returned 1. <the plugin's stderr>": its output is not ours to log.
            failed = message.split(". ", 1)[0]
            return (
                f"its exec credential plugin failed ({failed}; its output is not shown, as it"
                " may hold a credential: run the plugin yourself to see it)"
            )
    return (
        f"it is not a kubeconfig kubernetes_asyncio can read ({type(exc).__name__}; not shown,"
        " as it may quote the file)"
    )
