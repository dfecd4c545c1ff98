"""What an action acts on: ``Target`` and the target kinds, each with its own validation. Pure.

A target is rendered from alert labels, which whoever can push an alert controls; a target is
only acted on after its kind's ``validate`` has passed (and, for namespaced kinds, the
namespace policy, which the receiver applies). The kinds:

================  ==========  ==============================================  ================
kind              namespaced  name                                            client
================  ==========  ==============================================  ================
Deployment        yes         DNS-1123 subdomain (namespace: DNS-1123 label)  kubernetes
StatefulSet       yes         same                                            kubernetes
DaemonSet         yes         same                                            kubernetes
Pod               yes         same                                            kubernetes
PostgresDatabase  no          a configured PostgreSQL connection: ``orders``  postgres:NAME
RedisQueue        no          ``CONNECTION/QUEUE``: ``jobs/emails``           redis:CONNECTION
HttpEndpoint      no          a configured endpoint: ``payments_health``      http
================  ==========  ==============================================  ================

A Redis queue is named by connection and by a queue name configured under that connection,
never by a raw Redis key: an alert label can then only pick a queue the operator declared (as
the namespace policy does for Kubernetes), and the Redis connection an action needs follows
from the target alone. Configured names follow ``names.connection_name_errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from remediations import names

__all__ = [
    "KINDS",
    "Target",
    "TargetError",
    "TargetKind",
    "UnknownTargetKind",
    "parse_target_key",
    "quoted",
    "target_kind",
]

_REPR_MAX = 80


def quoted(value: object) -> str:
    """``repr(value)`` cut at 80 characters (ending in ``...`` when cut): how an error message
    echoes a value it was given, which may be as long as whatever carried it (a request line,
    a label) and then drowns the reason."""
    shown = repr(value)
    return shown if len(shown) <= _REPR_MAX else shown[: _REPR_MAX - 3] + "..."


class TargetError(ValueError):
    """A target that must not be acted on: names the field, the rejected value and why.

    ``str()`` is ``"<field> <quoted(value)> <reason>"`` (the value cut at 80 characters),
    e.g. ``namespace 'kube-system' is not allowed by policy (...)``.
    """

    def __init__(self, field: str, value: str, reason: str) -> None:
        super().__init__(f"{field} {quoted(value)} {reason}")
        self.field = field
        self.value = value
        self.reason = reason


class UnknownTargetKind(TargetError):
    """A kind that is none of ``KINDS``; ``known`` lists the kinds there are."""

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__("kind", kind, f"is not a known target kind ({', '.join(known)})")
        self.known = known


@dataclass(frozen=True, slots=True)
class Target:
    """What an action acts on. ``namespace`` is ``""`` for kinds that are not namespaced.

    Built from a rule's templates and validated (``target_kind(kind).validate(target)``)
    before any action sees it; constructing one checks nothing.
    """

    kind: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        """``kind/namespace/name`` for namespaced kinds, ``kind/name`` for the others.

        A kind not in ``KINDS`` is keyed as namespaced, the shape every key had before kinds
        existed. ``parse_target_key`` reverses it.
        """
        kind = KINDS.get(self.kind)
        if kind is None or kind.namespaced:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


@dataclass(frozen=True, slots=True)
class TargetKind:
    """One kind of target: whether it lives in a namespace, what its names look like, and which
    client (a ``Clients`` key) reaches it."""

    name: str
    namespaced: bool
    # The reason shown when a name is refused, e.g. "is not a DNS-1123 subdomain (...)".
    name_rule: str
    name_ok: Callable[[str], bool]
    client_for: Callable[[str], str]
    # A valid name of this kind, for docs and to stand in for a templated name at lint time.
    example: str = "example"

    def validate(self, target: Target) -> None:
        """Raise TargetError (field ``kind``, ``namespace`` or ``name``) unless ``target`` is a
        well-formed target of this kind. The namespace policy is not applied here."""
        if target.kind != self.name:
            raise TargetError("kind", target.kind, f"is not {self.name}")
        if self.namespaced:
            if not names.is_dns1123_label(target.namespace):
                raise TargetError(
                    "namespace",
                    target.namespace,
                    "is not a DNS-1123 label (a-z, 0-9, '-', at most 63)",
                )
        elif target.namespace:
            raise TargetError(
                "namespace", target.namespace, f"must be empty: a {self.name} has no namespace"
            )
        if not self.name_ok(target.name):
            raise TargetError("name", target.name, self.name_rule)

    def client(self, target: Target) -> str:
        """The ``Clients`` key of the system holding ``target`` (which must be valid), e.g.
        ``"postgres:orders"`` for PostgresDatabase ``orders``."""
        return self.client_for(target.name)


def _redis_queue_ok(name: str) -> bool:
    connection, slash, queue = name.partition("/")
    return bool(slash) and names.is_connection_name(connection) and names.is_connection_name(queue)


def _kubernetes(kind: str) -> TargetKind:
    return TargetKind(
        name=kind,
        namespaced=True,
        name_rule="is not a DNS-1123 subdomain (a-z, 0-9, '-', '.', at most 253)",
        name_ok=names.is_dns1123_subdomain,
        client_for=lambda _name: "kubernetes",
        example="web",
    )


_CONFIGURED = "a lowercase letter, then lowercase letters, digits or '_', at most 63"

KINDS: Mapping[str, TargetKind] = MappingProxyType(
    {
        kind.name: kind
        for kind in [
            _kubernetes("Deployment"),
            _kubernetes("StatefulSet"),
            _kubernetes("DaemonSet"),
            _kubernetes("Pod"),
            TargetKind(
                name="PostgresDatabase",
                namespaced=False,
                name_rule=f"is not a PostgreSQL connection name ({_CONFIGURED})",
                name_ok=names.is_connection_name,
                client_for=lambda name: f"postgres:{name}",
                example="orders",
            ),
            TargetKind(
                name="RedisQueue",
                namespaced=False,
                name_rule=f"is not CONNECTION/QUEUE (each {_CONFIGURED})",
                name_ok=_redis_queue_ok,
                client_for=lambda name: f"redis:{name.partition('/')[0]}",
                example="jobs/emails",
            ),
            TargetKind(
                name="HttpEndpoint",
                namespaced=False,
                name_rule=f"is not an HTTP endpoint name ({_CONFIGURED})",
                name_ok=names.is_connection_name,
                client_for=lambda _name: "http",
                example="payments_health",
            ),
        ]
    }
)


def target_kind(kind: str) -> TargetKind:
    """The kind named ``kind`` (case-sensitive, as in Kubernetes). Raises UnknownTargetKind."""
    try:
        return KINDS[kind]
    except KeyError:
        raise UnknownTargetKind(kind, sorted(KINDS)) from None


def parse_target_key(key: str) -> Target:
    """``Target.key`` back to a Target: ``"Deployment/shop/web"``, ``"RedisQueue/jobs/emails"``.

    The kind decides how the rest splits (a RedisQueue's name holds a ``/``). Raises
    TargetError (field ``key``) for a key of the wrong shape or UnknownTargetKind; the parts
    are not validated.
    """
    kind_name, slash, rest = key.partition("/")
    if not slash or not rest:
        raise TargetError("key", key, "is not kind/namespace/name or kind/name")
    if target_kind(kind_name).namespaced:
        namespace, slash, name = rest.partition("/")
        if not slash:
            raise TargetError("key", key, f"is not {kind_name}/namespace/name")
        return Target(kind_name, namespace, name)
    return Target(kind_name, "", rest)
