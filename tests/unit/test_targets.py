"""Target kinds: each kind's validation, the key format, and the unknown-kind error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediations.targets import (
    KINDS,
    Target,
    TargetError,
    UnknownTargetKind,
    parse_target_key,
    target_kind,
)

KUBERNETES_KINDS = ["Deployment", "StatefulSet", "DaemonSet", "Pod"]


def test_the_kinds_and_which_are_namespaced() -> None:
    assert {name: kind.namespaced for name, kind in KINDS.items()} == {
        "Deployment": True,
        "StatefulSet": True,
        "DaemonSet": True,
        "Pod": True,
        "PostgresDatabase": False,
        "RedisQueue": False,
        "HttpEndpoint": False,
    }


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(UnknownTargetKind) as caught:
        target_kind("deployment")  # case matters, as in Kubernetes
    assert isinstance(caught.value, TargetError)
    assert caught.value.field == "kind"
    assert caught.value.value == "deployment"
    assert caught.value.known == sorted(KINDS)
    assert str(caught.value) == (
        "kind 'deployment' is not a known target kind (DaemonSet, Deployment, HttpEndpoint, "
        "Pod, PostgresDatabase, RedisQueue, StatefulSet)"
    )


# --------------------------------------------------------------------------------------------
# Kubernetes kinds


@pytest.mark.parametrize("kind", KUBERNETES_KINDS)
@pytest.mark.parametrize(
    ("namespace", "name"), [("shop", "web"), ("a", "b.c-d"), ("n" * 63, "x" * 253), ("0", "0")]
)
def test_kubernetes_kinds_accept(kind: str, namespace: str, name: str) -> None:
    target_kind(kind).validate(Target(kind, namespace, name))


@pytest.mark.parametrize("kind", KUBERNETES_KINDS)
@pytest.mark.parametrize(
    ("namespace", "name", "field"),
    [
        ("", "web", "namespace"),  # a namespaced kind needs its namespace
        ("shop.eu", "web", "namespace"),  # a namespace is a label, not a subdomain
        ("n" * 64, "web", "namespace"),
        ("Shop", "web", "namespace"),
        ("shop\n", "web", "namespace"),
        ("shop", "", "name"),
        ("shop", "a..b", "name"),
        ("shop", "a-.b", "name"),
        ("shop", "web/../x", "name"),
        ("shop", "x" * 254, "name"),
        ("shop", "Web", "name"),
    ],
)
def test_kubernetes_kinds_reject(kind: str, namespace: str, name: str, field: str) -> None:
    with pytest.raises(TargetError) as caught:
        target_kind(kind).validate(Target(kind, namespace, name))
    assert caught.value.field == field


def test_kubernetes_messages_keep_their_wording() -> None:
    # Rule lint output and recorded skip reasons quote these.
    kind = target_kind("Deployment")
    with pytest.raises(
        TargetError,
        match=r"^namespace 'a\.b' is not a DNS-1123 label \(a-z, 0-9, '-', at most 63\)$",
    ):
        kind.validate(Target("Deployment", "a.b", "web"))
    with pytest.raises(
        TargetError,
        match=r"^name 'A' is not a DNS-1123 subdomain \(a-z, 0-9, '-', '\.', at most 253\)$",
    ):
        kind.validate(Target("Deployment", "shop", "A"))


def test_validate_refuses_a_target_of_another_kind() -> None:
    with pytest.raises(TargetError) as caught:
        target_kind("Deployment").validate(Target("Pod", "shop", "web"))
    assert caught.value.field == "kind"


# --------------------------------------------------------------------------------------------
# kinds outside Kubernetes: no namespace, names of things configured in the service


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("PostgresDatabase", "orders"),
        ("PostgresDatabase", "orders_replica2"),
        ("RedisQueue", "jobs/emails"),
        ("RedisQueue", "cache_eu/dead_letter"),
        ("HttpEndpoint", "payments_health"),
        ("HttpEndpoint", "x" * 63),
    ],
)
def test_configured_kinds_accept(kind: str, name: str) -> None:
    target_kind(kind).validate(Target(kind, "", name))


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "field"),
    [
        ("PostgresDatabase", "shop", "orders", "namespace"),
        ("PostgresDatabase", "", "", "name"),
        ("PostgresDatabase", "", "Orders", "name"),
        ("PostgresDatabase", "", "orders-eu", "name"),
        ("PostgresDatabase", "", "orders/x", "name"),
        ("PostgresDatabase", "", "1orders", "name"),
        ("PostgresDatabase", "", "x" * 64, "name"),
        ("PostgresDatabase", "", "postgres://u:p@db/orders", "name"),
        ("RedisQueue", "jobs", "emails", "namespace"),
        ("RedisQueue", "", "emails", "name"),  # the connection is part of the name
        ("RedisQueue", "", "jobs/", "name"),
        ("RedisQueue", "", "/emails", "name"),
        ("RedisQueue", "", "jobs/emails/x", "name"),
        ("RedisQueue", "", "jobs/queue:emails", "name"),  # a queue name, never a raw key
        ("RedisQueue", "", "jobs/*", "name"),
        ("HttpEndpoint", "", "https://example.com/", "name"),
        ("HttpEndpoint", "", "payments.health", "name"),
        ("HttpEndpoint", "default", "payments", "namespace"),
    ],
)
def test_configured_kinds_reject(kind: str, namespace: str, name: str, field: str) -> None:
    with pytest.raises(TargetError) as caught:
        target_kind(kind).validate(Target(kind, namespace, name))
    assert caught.value.field == field


def test_namespace_of_a_kind_without_one_says_so() -> None:
    with pytest.raises(TargetError, match="must be empty: a PostgresDatabase has no namespace"):
        target_kind("PostgresDatabase").validate(Target("PostgresDatabase", "shop", "orders"))


@pytest.mark.parametrize(
    ("target", "client"),
    [
        (Target("Deployment", "shop", "web"), "kubernetes"),
        (Target("Pod", "shop", "web-0"), "kubernetes"),
        (Target("PostgresDatabase", "", "orders"), "postgres:orders"),
        (Target("RedisQueue", "", "jobs/emails"), "redis:jobs"),
        (Target("HttpEndpoint", "", "payments_health"), "http"),
    ],
)
def test_each_kind_names_the_client_that_reaches_it(target: Target, client: str) -> None:
    assert target_kind(target.kind).client(target) == client


# --------------------------------------------------------------------------------------------
# keys


@pytest.mark.parametrize(
    ("target", "key"),
    [
        (Target("Deployment", "shop", "web"), "Deployment/shop/web"),
        (Target("Pod", "shop", "web-0"), "Pod/shop/web-0"),
        (Target("PostgresDatabase", "", "orders"), "PostgresDatabase/orders"),
        (Target("RedisQueue", "", "jobs/emails"), "RedisQueue/jobs/emails"),
        (Target("HttpEndpoint", "", "payments"), "HttpEndpoint/payments"),
        # Unknown kinds keep the shape every key had before kinds existed.
        (Target("CronJob", "shop", "nightly"), "CronJob/shop/nightly"),
    ],
)
def test_key(target: Target, key: str) -> None:
    assert target.key == key


def test_as_dict_keeps_the_three_fields() -> None:
    assert Target("PostgresDatabase", "", "orders").as_dict() == {
        "kind": "PostgresDatabase",
        "namespace": "",
        "name": "orders",
    }


@pytest.mark.parametrize(
    "target",
    [
        Target("Deployment", "shop", "web"),
        Target("RedisQueue", "", "jobs/emails"),
        Target("PostgresDatabase", "", "orders"),
    ],
)
def test_parse_target_key_reverses_key(target: Target) -> None:
    assert parse_target_key(target.key) == target


@pytest.mark.parametrize("key", ["Deployment", "Deployment/", "Deployment/web", "HttpEndpoint/"])
def test_parse_target_key_rejects_the_wrong_shape(key: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_target_key(key)
    assert caught.value.field == "key"


def test_parse_target_key_rejects_an_unknown_kind() -> None:
    with pytest.raises(UnknownTargetKind):
        parse_target_key("CronJob/shop/nightly")


@given(
    kind=st.sampled_from(sorted(KINDS)),
    namespace=st.text(alphabet="ab-", min_size=1, max_size=5),
    name=st.text(alphabet="ab/_", min_size=1, max_size=8),
)
def test_key_round_trips_for_every_valid_target(kind: str, namespace: str, name: str) -> None:
    target = Target(kind, namespace if KINDS[kind].namespaced else "", name)
    try:
        KINDS[kind].validate(target)
    except TargetError:
        return
    assert parse_target_key(target.key) == target


def test_long_values_are_cut_in_the_message() -> None:
    with pytest.raises(TargetError) as caught:
        target_kind("HttpEndpoint").validate(Target("HttpEndpoint", "", "x" * 5000))
    assert len(str(caught.value)) < 300
    assert caught.value.value == "x" * 5000


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_example_is_a_valid_name_of_that_kind(kind: str) -> None:
    spec = KINDS[kind]
    spec.validate(Target(kind, "shop" if spec.namespaced else "", spec.example))
