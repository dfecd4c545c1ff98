"""What the configuration allows but should not pass in silence: warnings for start-up.

Refusals (exit 2) are validation's job (``settings``, ``sources``, ``approvals``; an unknown
``REMEDIATOR_*`` variable is one, ``variables``); these are the settings that are valid yet
probably a mistake, or that remove a safety the default has:

- namespaces the default deny list protects that actions may now touch (``loud``: an error line
  in the log and a line in the banner).
- a configured webhook token shorter than 16 characters.
- a file the service trusts that other users of the machine may change (a secret, the
  approvers file, a rule file: ``loud``), or a secret file they may read.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from receiver.config.files import secret_files
from receiver.config.settings import Settings
from receiver.config.sources import KEYS
from receiver.model import NamespacePolicy

__all__ = [
    "MIN_WEBHOOK_TOKEN_CHARS",
    "Notice",
    "exposed_files",
    "newly_allowed",
    "start_up_notices",
]

_ENV = {key.field: key.env for key in KEYS}
# Settings naming a file (or a directory of files) of secrets, and files that are no secret
# but decide what the service does: whoever may change one may approve, or act, as anyone.
_SECRET_FILES = (
    "webhook_token_file",
    "webhook_password_file",
    "operator_token_file",
    "redis_password_file",
    "redis_sentinel_password_file",
    "redis_tls_key_file",
    "slack_signing_secret_file",
    "kubeconfig",
)
_SECRET_DIRS = ("operator_tokens_dir", "approval_keys_dir")
# No secret, but whoever may change the CA the guards' Redis is checked against may stand in
# for it (and so open every guard).
_TRUSTED_FILES = ("redis_tls_ca_file", "redis_tls_cert_file")

# Shorter still works (Alertmanager's shared cases use ten characters), but is guessable.
MIN_WEBHOOK_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to say at start-up; ``loud``: a safety the default has is off (log it as an
    error and put it in the banner)."""

    message: str
    loud: bool = False


def newly_allowed(settings: Settings) -> list[str]:
    """The namespaces the default deny list protects that the configured policy permits."""
    policy = settings.namespace_policy()
    return [ns for ns in NamespacePolicy().deny if policy.permits(ns)]


def _trusted_files(settings: Settings) -> Iterator[tuple[str, Path, bool]]:
    """(the setting, a file, whether it holds a secret) of every file the settings trust."""
    for field in _SECRET_FILES:
        path: Path | None = getattr(settings, field)
        if path is not None:
            yield _ENV[field], path, True
    for field in _TRUSTED_FILES:
        trusted: Path | None = getattr(settings, field)
        if trusted is not None:
            yield _ENV[field], trusted, False
    # A directory of secrets, and the directory itself: whoever may write it may add a file
    # to it (an operator's token, a signing key).
    for field in _SECRET_DIRS:
        directory: Path | None = getattr(settings, field)
        if directory is not None and directory.is_dir():
            yield _ENV[field], directory, False
            for entry in secret_files(directory, _ENV[field]):
                yield _ENV[field], entry, True
    for name, database in settings.postgres_databases.items():
        yield f"postgres.databases.{name}.dsn_file", database.dsn_file, True
    for name, queue in settings.redis_queues.items():
        yield f"redis.queues.{name}.url_file", queue.url_file, True
    for name, endpoint in settings.http_endpoints.items():
        if endpoint.url_file is not None:
            yield f"http.endpoints.{name}.url_file", endpoint.url_file, True
        for header, path in sorted(endpoint.header_files.items()):
            yield f"http.endpoints.{name}.header_files.{header}", path, True
    for name, channel in settings.notify_channels.items():
        yield f"notify.channels.{name}.url_file", channel.url_file, True
    if settings.approvers_file is not None:
        yield _ENV["approvers_file"], settings.approvers_file, False
    rules = settings.rules_dir
    if rules.is_dir():
        yield _ENV["rules_dir"], rules, False  # whoever may write it may add a rule that acts
        # The files the rules loader reads: the directory's own *.yaml and *.yml, not hidden
        # (rule tests and old copies in a subdirectory are not loaded). The loader's own filter
        # (receiver.rules.loader) is in a layer beside this one, which may not import it.
        for entry in sorted(rules.iterdir()):
            hidden = entry.name.startswith(".")
            if entry.suffix in (".yaml", ".yml") and not hidden and entry.is_file():
                yield _ENV["rules_dir"], entry, False


def exposed_files(settings: Settings, config_file: Path | None = None) -> list[Notice]:
    """A notice per file the settings trust that users other than its owner and group may
    write (``loud``: they may replace a token, add themselves as an approver, or write a rule
    that acts), or, for a secret, read. The mode of what a symbolic link points to, as a
    Kubernetes Secret volume mounts it (``defaultMode: 0440`` in deploy/ says nothing here).
    A file that cannot be read was refused by the settings already; it is skipped."""
    notices: list[Notice] = []
    trusted = list(_trusted_files(settings))
    if config_file is not None:
        # The settings themselves: dry-run, the namespace deny list, the budget.
        trusted.append(("the config file", config_file, False))
    for source, path, secret in trusted:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & stat.S_IWOTH:
            notices.append(
                Notice(
                    f"{source}: any user of this machine may change {path} (mode "
                    f"{mode:04o}); chmod {'o-rw' if secret else 'o-w'} it",
                    loud=True,
                )
            )
        elif secret and mode & stat.S_IROTH:
            notices.append(
                Notice(
                    f"{source}: any user of this machine may read {path} (mode {mode:04o}); "
                    "chmod o-r it (in Kubernetes, defaultMode: 0440 on the Secret's volume)"
                )
            )
    return notices


def start_up_notices(settings: Settings, config_file: Path | None = None) -> list[Notice]:
    """Everything above, for the settings as configured (before the embedded default adds
    its generated credentials), read from ``config_file`` when one was given."""
    notices: list[Notice] = []
    allowed = newly_allowed(settings)
    if allowed:
        notices.append(
            Notice(
                f"actions may touch {', '.join(allowed)}: REMEDIATOR_NAMESPACE_DENY "
                f"({', '.join(settings.namespace_deny) or 'none'}) no longer denies them",
                loud=True,
            )
        )
    token = settings.webhook_token
    if token is not None and len(token.get_secret_value()) < MIN_WEBHOOK_TOKEN_CHARS:
        notices.append(
            Notice(
                f"the webhook token is {len(token.get_secret_value())} characters; use at least "
                f"{MIN_WEBHOOK_TOKEN_CHARS} (e.g. openssl rand -base64 32)"
            )
        )
    return notices + exposed_files(settings, config_file)
