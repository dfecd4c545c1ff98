"""The files behind the approval settings: signing keys, operator tokens, approvers, Slack.

``load_approvals(settings)`` reads every file the settings name, once, at start-up, and returns
plain values (``ApprovalFiles``); an unreadable, empty or malformed file is a ConfigError that
names the setting and the file (never a secret). Secrets are kept as ``SecretStr``.

The approvers file (YAML)::

    by_rule: {rollback-or-scale-on-high-error-rate: [alice, bob]}   # wins over by_risk
    by_risk: {high: [alice, bob, carol]}          # low | high
    default: []                                   # everyone else: nobody (fail closed)
    slack_users: {U012ABCDEF: alice}              # Slack user id -> approver name
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

from receiver.config.settings import ConfigError, Settings
from receiver.config.settings_file import yaml_problem
from receiver.config.sources import KEYS, read_file, read_secret, secret_files
from receiver.config.values import escaped, plausible_key, unknown_key_error
from receiver.rules.shapes import shape_message
from receiver.rules.yaml_lines import Located, parse_yaml, safe_load
from receiver.rules.yaml_loaders import boolean_word

__all__ = ["ApprovalFiles", "ApproversFile", "load_approvals"]

_ENV = {k.field: k.env for k in KEYS}


class ApproversFile(BaseModel):
    """The approvers file's schema; unknown keys are errors (a typo must not open or close
    the door silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by_rule: dict[str, list[str]] = {}
    by_risk: dict[str, list[str]] = {}
    default: list[str] = []
    slack_users: dict[str, str] = {}

    @field_validator("by_risk")
    @classmethod
    def _risks(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(value) - {"low", "high"})
        if unknown:
            # Named only when it looks like a risk's name (``unknown_key_error`` says why).
            shown = [r for r in unknown if plausible_key([r])] or ["(a key not shown)"]
            raise ValueError(f"unknown risk {', '.join(shown)}; use low or high")
        return value


@dataclass(frozen=True, slots=True)
class ApprovalFiles:
    """What the approval settings' files hold. Empty where a setting is not given."""

    # Key id -> key bytes (the links' signing keys).
    keys: Mapping[str, SecretStr] = field(default_factory=dict)
    approvers: ApproversFile = field(default_factory=ApproversFile)
    slack_signing_secret: SecretStr | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def _secret_dir(path: Path, setting: str) -> dict[str, SecretStr]:
    """One secret per file, named by the file (``secret_files``)."""
    source = _ENV[setting]
    found = {e.name: read_secret(e, source) for e in secret_files(path, source)}
    if not found:
        raise ConfigError(f"{_ENV[setting]}: {path} holds no files")
    return found


def _approvers(path: Path) -> ApproversFile:
    text = read_file(path, _ENV["approvers_file"], "approvers file")
    try:
        data = safe_load(text)
        return ApproversFile.model_validate(data or {})
    except yaml.YAMLError as exc:
        # file:line and the problem, as the settings file says it (str(exc) spans lines).
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = yaml_problem(exc)  # its quoted text only when not the file's (a key twice)
        raise ConfigError(f"{_ENV['approvers_file']}: {where}: {problem}") from None
    except ValidationError as exc:
        # A key is quoted as the settings file quotes one (``unknown_key_error``): a key that
        # is no key's name may be a secret written in the wrong place.
        located = Located(str(path))
        parse_yaml(text, located)  # the booleans written `on`, `yes`, ..., to say to quote them
        problems = "; ".join(
            unknown_key_error("", e["loc"], ApproversFile)
            if e["type"] == "extra_forbidden"
            else f"{'.'.join(escaped(p) for p in e['loc']) or 'file'}: "
            # Without pydantic's "Value error, ", as every other setting's message is told.
            + (
                boolean_word(located.words, e["loc"], e)
                # `default: alice` for `default: [alice]`: pydantic's "a valid list".
                or shape_message(e, {})
                or e["msg"].removeprefix("Value error, ")
            )
            for e in exc.errors()
        )
        raise ConfigError(f"{_ENV['approvers_file']}: {path}: {problems}") from None


def _networks(
    values: tuple[str, ...], sso_header: str | None
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        networks = tuple(ipaddress.ip_network(v, strict=False) for v in values)
    except ValueError as exc:
        raise ConfigError(f"{_ENV['sso_trusted_proxies']}: {exc}") from None
    wide = _too_wide(networks)
    if wide and sso_header is not None:
        # Whoever may send the header names the approver: trusting every address, or a large
        # part of the internet (0.0.0.0/1 and 128.0.0.0/1 together are every address), lets
        # anyone approve as anyone.
        raise ConfigError(
            f"{_ENV['sso_trusted_proxies']}: {wide} with {_ENV['sso_user_header']}: anyone"
            " could name any approver; list the SSO proxy's addresses"
        )
    return networks


# The private blocks a cluster's proxies live in (RFC 1918, RFC 6598's shared space, loopback,
# link-local, RFC 4193's unique local): trusting one of them whole is a deployment's choice.
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "::1/128",
        "fe80::/10",
    )
)
# The most public addresses trusted proxies may cover: a /16 of IPv4, a /48 of IPv6 (a site).
_PUBLIC_LIMIT = {4: 2**16, 6: 2**80}


# IPv6 blocks that carry IPv4 addresses (RFC 4291's IPv4-mapped, RFC 6052's NAT64 prefix): a
# peer there is an IPv4 address, and ::ffff:0:0/96 is every one of them.
_IPV4_IN_IPV6 = tuple(ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96"))


def _as_ipv4(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``network`` as the IPv4 addresses it carries, when it lies in an IPv4-carrying block."""
    for block in _IPV4_IN_IPV6:
        if network.version == 6 and network.subnet_of(block):  # type: ignore[arg-type]
            first = int(network.network_address) & 0xFFFFFFFF
            return ipaddress.ip_network((first, network.prefixlen - 96))
    return network


def _too_wide(networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str:
    """What of ``networks`` trusts too much: "" when nothing; else the networks and how many
    public addresses they cover together (overlaps counted once), past a /16 of IPv4 or a /48
    of IPv6."""
    networks = tuple(_as_ipv4(n) for n in networks)
    for version, limit in _PUBLIC_LIMIT.items():
        mine = [n for n in networks if n.version == version]
        public = 0
        for net in ipaddress.collapse_addresses(mine):  # type: ignore[type-var]
            public += net.num_addresses
            for private in _PRIVATE:
                if private.version != version:
                    continue
                if net.subnet_of(private) or private.subnet_of(net):  # type: ignore[arg-type]
                    public -= min(net.num_addresses, private.num_addresses)
        if public > limit:
            listed = ", ".join(str(n) for n in mine)
            return f"{listed}: {public:,} public IPv{version} addresses trusted"
    return ""


def _other_credentials(settings: Settings) -> list[tuple[str, str]]:
    """(how a message names it, value) of each credential of another role: the webhook's
    token and password, each operator's token."""
    found = [
        (f"the webhook's {what} ({_ENV[field]})", secret.get_secret_value())
        for what, field, secret in (
            ("token", "webhook_token", settings.webhook_token),
            ("password", "webhook_password", settings.webhook_password),
        )
        if secret is not None
    ]
    found += [
        (
            f"the token of operator {name!r} ({_ENV['operator_tokens_dir']})",
            token.get_secret_value(),
        )
        for name, token in sorted(settings.operator_tokens.items())
    ]
    return found


def _check_distinct(files: ApprovalFiles, settings: Settings) -> None:
    """One credential, one job: the Slack signing secret and each link key are no other
    credential, nor each other. Whoever holds the webhook's token (Alertmanager's configuration)
    could otherwise sign a Slack click and decide as any approver ``slack_users`` maps, or
    forge links and their forms' CSRF tokens. Raises ConfigError naming both settings."""
    others = _other_credentials(settings)
    keys = [(kid, key.get_secret_value()) for kid, key in sorted(files.keys.items())]
    for kid, key in keys:
        for what, value in others:
            if key == value:
                raise ConfigError(
                    f"{_ENV['approval_keys_dir']}: key {kid!r} is {what}; give each credential"
                    " its own (a key signs approval links, and nothing else may be it)"
                )
    if files.slack_signing_secret is None:
        return
    slack = files.slack_signing_secret.get_secret_value()
    linked = [(f"approval key {kid!r} ({_ENV['approval_keys_dir']})", key) for kid, key in keys]
    for what, value in [*others, *linked]:
        if slack == value:
            raise ConfigError(
                f"{_ENV['slack_signing_secret_file']}: the Slack signing secret is {what}:"
                " whoever holds that could sign Slack clicks and decide as any approver"
                " slack_users maps; give each credential its own"
            )


def load_approvals(settings: Settings) -> ApprovalFiles:
    """Read the files the approval settings name. Raises ConfigError naming the setting, also
    when a key or the Slack secret is another credential (``_check_distinct``)."""
    files = ApprovalFiles(
        keys=(
            _secret_dir(settings.approval_keys_dir, "approval_keys_dir")
            if settings.approval_keys_dir
            else {}
        ),
        approvers=(
            _approvers(settings.approvers_file) if settings.approvers_file else ApproversFile()
        ),
        slack_signing_secret=(
            read_secret(settings.slack_signing_secret_file, _ENV["slack_signing_secret_file"])
            if settings.slack_signing_secret_file
            else None
        ),
        trusted_proxies=_networks(settings.sso_trusted_proxies, settings.sso_user_header),
    )
    _check_distinct(files, settings)
    return files
