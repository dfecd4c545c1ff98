"""Clients by name: what is configured, what is missing, and what the refusal says."""

from __future__ import annotations

import pytest

from remediations.base import Action, ActionError, ActionRefused, Clients, MissingClient
from remediations.kubernetes.catalog import ACTIONS
from remediations.targets import Target

KUBE = object()
ORDERS = object()


def test_get_returns_the_client_by_name() -> None:
    clients = Clients({"kubernetes": KUBE, "postgres:orders": ORDERS})
    assert clients.get("kubernetes") is KUBE
    assert clients.get("postgres:orders") is ORDERS
    assert clients.has("kubernetes")
    assert not clients.has("postgres:billing")


def test_no_mapping_means_nothing_configured() -> None:
    assert not Clients().has("kubernetes")
    assert not Clients({}).has("http")


def test_missing_lists_the_names_not_configured_sorted_once() -> None:
    clients = Clients({"kubernetes": KUBE, "postgres:orders": ORDERS})
    assert clients.missing(["redis:jobs", "kubernetes", "http", "redis:jobs"]) == [
        "http",
        "redis:jobs",
    ]
    assert clients.missing(frozenset({"kubernetes", "postgres:orders"})) == []
    assert clients.missing([]) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("kubernetes", "no Kubernetes credentials are configured (client 'kubernetes')"),
        (
            "postgres:orders",
            "no PostgreSQL connection named 'orders' is configured (client 'postgres:orders')",
        ),
        ("redis:jobs", "no Redis connection named 'jobs' is configured (client 'redis:jobs')"),
        ("http", "no HTTP endpoints are configured (client 'http')"),
        ("notify", "no notification channels are configured (client 'notify')"),
        ("smtp", "no client named 'smtp' is configured (client 'smtp')"),
    ],
)
def test_missing_client_says_which_system_is_not_configured(name: str, message: str) -> None:
    with pytest.raises(MissingClient) as caught:
        Clients().get(name)
    assert caught.value.name == name
    assert caught.value.message == message
    assert str(caught.value) == message


def test_missing_client_is_a_refusal() -> None:
    # The pipeline records an ActionRefused as "refused", not "failed": nothing was attempted.
    assert issubclass(MissingClient, ActionRefused)
    assert issubclass(MissingClient, ActionError)


def test_a_none_client_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="'kubernetes' is None"):
        Clients({"kubernetes": None})


def test_clients_are_read_only_and_independent_of_the_mapping() -> None:
    mapping = {"kubernetes": KUBE}
    clients = Clients(mapping)
    mapping["http"] = object()
    assert not clients.has("http")


def test_repr_shows_names_not_clients() -> None:
    assert (
        repr(Clients({"kubernetes": KUBE, "http": object()})) == "Clients(['http', 'kubernetes'])"
    )


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: a.name)
def test_kubernetes_actions_require_the_kubernetes_client(action: Action) -> None:
    assert isinstance(action, Action)
    assert action.requires(Target("Deployment", "shop", "web")) == frozenset({"kubernetes"})
