"""The service's configuration: ``settings`` (what can be set, validated) and ``sources``
(a YAML file, ``REMEDIATOR_*`` variables, secret files). Everything is validated at start-up;
an invalid value names the key the user wrote and the problem."""

from receiver.config.inline import connect_host
from receiver.config.settings import (
    MIB,
    ConfigError,
    DryRun,
    LogFormat,
    Settings,
    parse_size,
)
from receiver.config.sources import (
    ENV_PREFIX,
    KEYS,
    Key,
    kube_credentials_present,
    load_settings,
    named,
)

__all__ = [
    "ENV_PREFIX",
    "KEYS",
    "MIB",
    "ConfigError",
    "DryRun",
    "Key",
    "LogFormat",
    "Settings",
    "connect_host",
    "kube_credentials_present",
    "load_settings",
    "named",
    "parse_size",
]
