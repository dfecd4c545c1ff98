"""What the tests of the ``http.call`` action share: the alert its steps run for and the
context a step of one configured endpoint runs with (``endpoint_ctx``)."""

from __future__ import annotations

import aiohttp

from remediations.base import ActionContext, AlertFacts, Clients
from remediations.http.endpoints import Endpoint, HttpEndpoints

# The alert the steps run for: its labels are what a body template may name.
CACHE_STALE = AlertFacts(labels={"alertname": "CacheStale"}, status="firing")


def endpoint_ctx(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    *,
    alert: AlertFacts = CACHE_STALE,
    run_id: str = "run-7",
) -> ActionContext:
    """The context step 0 of run ``run_id`` of rule ``endpoint.name`` is given (not a dry
    run, ``alert`` firing): ``endpoint`` the one HTTP endpoint configured, its requests sent
    over ``session``. Target it as ``Target("HttpEndpoint", "", endpoint.name)``."""
    clients = Clients({"http": HttpEndpoints({endpoint.name: endpoint}, session)})
    return ActionContext(run_id, False, clients, rule=endpoint.name, alert=alert)
