"""What the service settles and says at start-up: its credentials, its stores, the banner.

The embedded default still authenticates: it generates a webhook token and an operator token
under the data directory (kept, mode 0600, and reused), and the banner names them (a short
prefix and the file) with a curl that works. No secret is ever printed. With external servers,
serving without any webhook authentication must be asked for. A store it cannot reach, or a URL
it cannot read, ends the start with one line naming the variable (never the password):
``StartupError`` (exit 1) or ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from receiver.config import ConfigError, Settings, named
from receiver.config.inline import url_origin
from receiver.config.redact import redacted
from receiver.dsn_errors import not_a_dsn, refused, where
from receiver.embedded.credentials import (
    LOCAL_OPERATOR,
    OPERATOR_TOKEN_FILE,
    WEBHOOK_TOKEN_FILE,
    secret_file,
)
from receiver.reloads import RuleReloads, log_rule_warnings, rules_data
from receiver.rules.loader import RuleHolder
from receiver.rules.model import RuleSet
from receiver.store import (
    STATEMENT_MODE_FIX,
    PoolerNotNamed,
    PoolTooSmall,
    Store,
    StoreUnavailable,
    statement_pooled,
)

__all__ = [
    "Generated",
    "RuleReloads",
    "StartupError",
    "banner",
    "configuration_record",
    "connect_store",
    "embedded_credentials",
    "log_rule_warnings",
    "matching_sample",
    "mode_text",
    "require_authentication",
    "storage_text",
]


DEFAULT_DATA_DIR = Settings.model_fields["data_dir"].default
# The notifications shipped for trying the service (the banner's curl posts one).
SAMPLES_DIR = Path(__file__).parent / "samples"


class StartupError(Exception):
    """The service cannot start for a reason outside its configuration's shape (a store out of
    reach, a refused password). The message names what to fix, never a secret."""


async def connect_store(settings: Settings, dsn: str, *, check_pooler: bool = True) -> Store:
    """The store at ``dsn`` (the configured one, else the embedded server's), migrated; each
    connection its pool opens makes the history read's plan at once (``Store.connect(warm=)``).
    ``check_pooler``: on a configured ``database_url``, check that it gives every connection
    the ``worker.processes`` processes hold at most (a session pooler's pool big enough,
    ``Store.connect``), and look for a transaction pooler ``database.pooler`` does not name
    (False in a worker process: ``serve`` looked before starting it).

    Raises ConfigError for a DSN asyncpg cannot read or a transaction pooler ``database.pooler``
    does not name, StartupError when PostgreSQL cannot be reached or refuses (a password, a
    database that does not exist) or a session pooler's pool is too small."""
    source = named("database_url") if settings.database_url else "embedded PostgreSQL"
    try:
        return await Store.connect(
            dsn,
            transaction_pooled=settings.transaction_pooled,
            warm=True,
            check_pooler=check_pooler and settings.database_url is not None,
            processes=settings.worker_processes,
            listen_through=settings.database_direct_url is None,
        )
    except PoolerNotNamed as exc:
        # Our settings contradict what database_url is (exit 2, as the CLI commands say it).
        raise ConfigError(f"{source}: {exc}") from None
    except PoolTooSmall as exc:
        raise StartupError(f"{source}: {exc}") from None
    except (ValueError, asyncpg.exceptions.ClientConfigurationError) as exc:
        raise not_a_dsn(source, dsn, exc) from None
    except StoreUnavailable as exc:
        cause = exc.__cause__ or exc
        if statement_pooled(cause):
            # Reached, and refused for good: its message, not an outage's, and the fix.
            raise StartupError(
                f"{source}: {where(dsn)} refused a transaction: {STATEMENT_MODE_FIX}"
            ) from None
        # A connect timeout has no text of its own ("TimeoutError: " said nothing).
        text = str(cause) or ("no answer in time" if isinstance(cause, TimeoutError) else "")
        reason = redacted(f"{type(cause).__name__}: {text}" if text else type(cause).__name__, dsn)
        raise StartupError(f"{source}: cannot reach PostgreSQL at {where(dsn)}: {reason}") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(refused(source, dsn, exc)) from None


@dataclass(frozen=True, slots=True)
class Generated:
    """Which credentials the embedded default generated (only those may be printed)."""

    webhook: bool = False
    operator: bool = False


def embedded_credentials(settings: Settings) -> tuple[Settings, Generated]:
    """The embedded default still authenticates, with nothing to configure: a webhook token
    (unless webhook auth is configured) and the token of the operator ``local`` (unless
    operators are configured), random, kept in the data directory (mode 0600) across restarts.

    Returns the settings that use them, and which were generated. Raises EmbeddedError when a
    kept token is unreadable or open to other users."""
    update: dict[str, Any] = {}
    generated = Generated(
        webhook=not settings.auth_configured, operator=settings.operator_tokens_dir is None
    )
    if generated.webhook:
        token = secret_file(settings.data_dir / WEBHOOK_TOKEN_FILE)
        update["webhook_token"] = SecretStr(token)
    if generated.operator:
        token = secret_file(settings.data_dir / OPERATOR_TOKEN_FILE)
        update["operator_tokens"] = {LOCAL_OPERATOR: SecretStr(token)}
    return settings.model_copy(update=update), generated


def require_authentication(settings: Settings) -> None:
    """Fail closed: webhooks trigger changes, so an open receiver must be asked for.

    The embedded default is covered (it generates a token); with external servers the
    operator sets a token or basic auth, or says REMEDIATOR_ALLOW_UNAUTHENTICATED=true.
    """
    external = settings.database_url is not None and settings.redis_external
    if external and not settings.auth_configured and not settings.allow_unauthenticated:
        raise ConfigError(
            f"{named('webhook_token_file')}: no webhook authentication is configured; set a "
            f"bearer token ({named('webhook_token_file')}) or basic auth "
            f"({named('webhook_username')} and {named('webhook_password_file')}), or "
            f"{named('allow_unauthenticated')} true on a network you trust"
        )


def matching_sample(rules: RuleSet, samples: Path = SAMPLES_DIR) -> Path | None:
    """The first sample notification in ``samples`` (``*.json``, by name) with an alert whose
    labels a rule of ``rules`` matches; None when none has. A sample no rule matches is stored
    done and starts no run: the banner suggested ``high-memory.json`` to a service whose only
    rule takes ``alertname="TryApproval"`` (the README's "Try an approval locally")."""
    for path in sorted(samples.glob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # the banner's hint never stops a start
            continue
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        for alert in alerts if isinstance(alerts, list) else ():
            labels = alert.get("labels") if isinstance(alert, dict) else None
            if isinstance(labels, dict) and rules.matches_any(
                {str(k): str(v) for k, v in labels.items()}
            ):
                return path
    return None


def banner(
    settings: Settings,
    url: str,
    *,
    dry_run: bool,
    live: Sequence[str],
    embedded: bool,
    shown: Generated,
    sample: Path | None,
    warnings: Sequence[str] = (),
) -> str:
    """What `make run` prints: where it listens, how it runs, and commands that work.

    ``dry_run``: nothing changes anywhere; otherwise steps on the systems in ``live`` (client
    names, e.g. ``kubernetes``, ``postgres:orders``) change them and the others run dry.
    ``embedded``: this process runs the servers whose URL is not configured. Only generated
    tokens (``shown``) are named, by a short prefix and the file holding them (the commands read
    that file); a secret is never printed, the hints name a variable instead. ``sample``: the
    notification the curl posts (``matching_sample``); None: no sample matches the rules, and
    the curl posts the user's own ``ALERT.json``. ``warnings``: safeties the configuration
    turned off, one line each."""
    # A generated token is named by a short prefix and its file, never printed whole: the
    # banner goes to stderr, which container logs keep. The commands read the file.
    webhook_file = settings.data_dir / WEBHOOK_TOKEN_FILE
    operator_file = settings.data_dir / OPERATOR_TOKEN_FILE
    webhook = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
    if webhook and shown.webhook:
        auth = f'-H "Authorization: Bearer $(cat {shlex.quote(str(webhook_file))})" '
    elif settings.webhook_token is not None:
        auth = '-H "Authorization: Bearer $WEBHOOK_TOKEN" '
    elif settings.basic_auth_configured:
        auth = f"-u '{settings.webhook_username}:PASSWORD' "
    else:
        auth = ""
    operator = settings.operator_tokens.get(LOCAL_OPERATOR) if shown.operator else None
    if operator is not None:
        operator_auth = f'-H "Authorization: Bearer $(cat {shlex.quote(str(operator_file))})" '
    elif settings.operator_tokens or settings.auth_configured:
        operator_auth = '-H "Authorization: Bearer $OPERATOR_TOKEN" '
    else:
        operator_auth = ""
    storage = storage_text(settings) if embedded else "external PostgreSQL and Redis"
    lines = [
        "",
        f"alert-remediator is listening on {url}",
        f"  mode:       {mode_text(dry_run, live)}",
        f"  storage:    {storage}",
        f"  rules:      {settings.rules_dir}",
        *(f"  WARNING:    {warning}" for warning in warnings),
    ]
    if webhook and shown.webhook:
        lines.append(
            f"  webhook token:  {_prefix(webhook)}  (in {webhook_file}; posts alerts, nothing else)"
        )
    elif settings.auth_configured:
        lines.append("  webhook auth: as configured (the secret is not printed)")
    else:
        lines.append("  webhook auth: NONE (set REMEDIATOR_WEBHOOK_TOKEN_FILE)")
    if operator is not None:
        lines.append(
            f"  operator token: {_prefix(operator.get_secret_value())}  (in {operator_file};"
            f" operator {LOCAL_OPERATOR!r}: runs, status, pause, resume)"
        )
    elif settings.operator_tokens:
        names = ", ".join(sorted(settings.operator_tokens))
        lines.append(f"  operators:  {names} (tokens from {settings.operator_tokens_dir})")
    elif settings.auth_configured:
        lines.append("  operators:  NONE: runs, status and pause are refused to everyone")
    if sample is not None:
        post, data = "  post a sample alert:", str(sample)
    else:
        post, data = "  post an alert of yours (no sample alert matches the rules):", "ALERT.json"
    lines += [
        post,
        f"    curl -sS {auth}-H 'Content-Type: application/json' "
        f"--data @{data} {url}/api/v1/alerts",
        f"  then list the runs:  {_cli_command(settings)} runs{_cli_url(url, embedded)}"
        f"   (or curl -sS {operator_auth}{url}/api/v1/runs)",
        "",
    ]
    return "\n".join(lines)


# How much of a generated token the banner shows: enough to tell two apart, not to use one.
_PREFIX_CHARS = 4


def _prefix(token: str) -> str:
    return f"{token[:_PREFIX_CHARS]}…"


def storage_text(settings: Settings) -> str:
    """Which stores are embedded (the ones without a configured URL) and which external."""
    postgres, redis = settings.database_url is None, not settings.redis_external
    where = f"under {settings.data_dir}"
    if postgres and redis:
        return f"embedded PostgreSQL and Redis {where}"
    if postgres:
        return f"embedded PostgreSQL {where}; external Redis ({_redis_source(settings)})"
    if redis:
        return f"external PostgreSQL (REMEDIATOR_DATABASE_URL); embedded Redis {where}"
    return "external PostgreSQL and Redis"


def _redis_source(settings: Settings) -> str:
    mode = settings.redis_mode.value
    return "REMEDIATOR_REDIS_URL" if mode == "standalone" else f"REMEDIATOR_REDIS_MODE={mode}"


def _cli_command(settings: Settings) -> str:
    """How to run the CLI from here: ``.venv/bin/remediator`` after `make run`, which does not
    put the virtualenv on PATH; plain ``remediator`` when that is what PATH finds; the absolute
    path otherwise (``invoked_command``). With a data directory other than the default, the
    variable that points the CLI at it (its operator token and owner record are there) comes
    first; with configured operators, the variable naming a token's file."""
    argv0 = sys.argv[0] if sys.argv else ""
    command = invoked_command(argv0, Path.cwd(), shutil.which, sys.executable)
    if settings.data_dir != DEFAULT_DATA_DIR:
        command = f"REMEDIATOR_DATA_DIR={shlex.quote(str(settings.data_dir))} {command}"
    if settings.operator_tokens and settings.operator_tokens_dir is not None:
        # Configured operators: no token is generated, each sends their own (the first one
        # named, as an example that works for whoever may read that file).
        mine = settings.operator_tokens_dir / min(settings.operator_tokens)
        command = f"REMEDIATOR_OPERATOR_TOKEN_FILE={shlex.quote(str(mine))} {command}"
    return command


def invoked_command(
    argv0: str, cwd: Path, which: Callable[[str], str | None], python: str = ""
) -> str:
    """The ``remediator`` command to print for a user in ``cwd``, given how this process was
    started (``argv0``, ``sys.argv[0]``), a PATH lookup (``shutil.which``) and this
    interpreter (``python``, ``sys.executable``): the bare name when PATH finds this same file
    (or, not started by the ``remediator`` script, any); else, started by the script, its path
    relative to ``cwd`` when it lies below it (``.venv/bin/remediator``) or its absolute path;
    started as ``python -m receiver.cli``, that again; else the bare name. Quoted for a shell.
    A bare name that PATH does not find was printed before, and the banner's command failed
    with "command not found" (a fresh tester, stop 47)."""
    invoked = Path(argv0) if argv0 else None
    found = which("remediator")
    if invoked is not None and invoked.parts[-3:] == ("receiver", "cli", "__main__.py"):
        if found is None and python:
            return f"{shlex.quote(python)} -m receiver.cli"
        return "remediator"
    if invoked is None or invoked.name != "remediator":
        return "remediator"
    script = invoked if invoked.is_absolute() else cwd / invoked
    if found is not None and Path(found).resolve() == script.resolve():
        return "remediator"
    try:
        below = script.relative_to(cwd)
    except ValueError:
        return shlex.quote(str(script))
    # A shell looks a bare name up on PATH: the script in cwd itself is ./remediator.
    return shlex.quote(str(below) if below.parent != Path() else f"./{below}")


def _cli_url(url: str, embedded: bool) -> str:
    """The ``--url`` the banner's CLI command needs: none when this process runs embedded
    servers (its record in the data directory tells the CLI where it answers), else this
    service's URL. Without it, a service on a port from its config file or ``--port`` was looked
    for at the CLI's default (127.0.0.1:9095), as a tester who ran the banner's command found."""
    return "" if embedded else f" --url {shlex.quote(url)}"


def mode_text(dry_run: bool, live: Sequence[str]) -> str:
    """The banner's (and the ``started`` log line's) mode: dry-run, or live on which systems."""
    if dry_run:
        return "dry-run everywhere (REMEDIATOR_DRY_RUN=true): nothing is changed"
    if not live:
        return "dry-run (nothing is changed): no cluster credentials, no connections configured"
    missing = "" if "kubernetes" in live else "; Kubernetes steps dry-run (no cluster credentials)"
    return f"LIVE on {', '.join(live)} (steps there change things){missing}"


def configuration_record(
    settings: Settings,
    rules: RuleHolder,
    *,
    dry_run: bool,
    live: Sequence[str],
    embedded: bool,
    worker: str,
) -> dict[str, Any]:
    """What the audit log records when the service starts (``service.started``): every setting
    as loaded, secrets masked (pydantic writes a ``SecretStr`` as ``**********``; operators
    by name only; connection secrets are never part of the settings' data, and a URL or header
    written in the configuration itself that holds a known kind of credential is refused at load
    by ``connections.clear_url``), the rules in force, the mode and the systems steps act on
    live. An endpoint's ``url`` is recorded as ``scheme://host[:port]`` only, and its headers
    by name (values as ``***``): the audit log is
    append-only and hash-chained, so a secret in a path or query the checks missed could never
    be taken out of it again."""
    config = settings.model_dump(mode="json")
    config["operator_tokens"] = sorted(settings.operator_tokens)
    for endpoint in config.get("http_endpoints", {}).values():
        if endpoint.get("url"):
            endpoint["url"] = url_origin(endpoint["url"])
        # Header values by name only: a bare token (a JWT, `ghp_...`) passes every check of
        # what may be written inline, and this log could never forget it.
        endpoint["headers"] = {name: "***" for name in endpoint.get("headers") or {}}
    return {
        "host": socket.gethostname(),
        "worker": worker,
        # The flag alone (REMEDIATOR_DRY_RUN) is false on the embedded default, where every step
        # still runs dry for want of a system: the mode says what the service will do, in words.
        "dry_run": dry_run,
        "mode": mode_text(dry_run, live),
        "live": sorted(live),
        "embedded": embedded,
        "rules": rules_data(rules),
        "settings": config,
    }
