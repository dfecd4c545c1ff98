"""What the approval tests share: keys, operators, the desk, and a real local HTTP peer.

``peer`` is an aiohttp server the tests start: it holds a counter that the ``test.poke``
action reads (``preview``) and bumps (``run``) over real HTTP, so "the step ran once" is
counted by a server, not by a mock; it also takes the approval notifications (``/notify``).
``approval_env`` builds the pipeline harness with an approval desk around them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import BaseModel, ConfigDict, SecretStr

from receiver.approvals.desk import ApprovalDesk
from receiver.approvals.identity import IdentityResolver, token_table
from receiver.approvals.notify import ChannelNotifier
from receiver.approvals.policy import ApproverPolicy
from receiver.approvals.tokens import KeyRing, LinkTokens
from receiver.model import ApprovalRecord, NamespacePolicy
from receiver.store import RunRecord, Store
from receiver.telemetry import Metrics
from remediations.base import (
    ActionContext,
    ActionRefused,
    Change,
    Outcome,
    Result,
    Risk,
)
from remediations.notify.message import ChannelKind
from remediations.notify.notifier import Channel, Notifier
from remediations.targets import Target
from tests.support.pipeline import Harness, MakeHarness
from tests.support.polling import eventually

__all__ = [
    "OPERATORS",
    "POKE_RULES",
    "POKE_RULE_HEAD",
    "ApprovalEnv",
    "DisruptivePoke",
    "MakeApprovalEnv",
    "Peer",
    "Poke",
    "SlowPreview",
    "approval_env",
    "budget_slots",
    "key_ring",
    "loopback_sso",
    "peer",
    "poke_labels",
]

STEP_AWAITING = "awaiting_approval"
KEYS = {"k1": b"k1-" + b"x" * 40, "k2": b"k2-" + b"y" * 40}
# Operator name -> token. carol is an operator but not an approver of the poke rule.
OPERATORS = {"alice": "tok-alice", "bob": "tok-bob", "carol": "tok-carol"}
POLICY = ApproverPolicy.of(by_rule={"poke": ["alice", "bob"]}, by_risk={"high": ["alice"]})

# The poke rule up to its steps: a test adds the steps, follow-ups and the rest it needs.
POKE_RULE_HEAD = """
rules:
  - name: poke
    match: ['alertname="Poke"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
"""
POKE_RULES = (
    POKE_RULE_HEAD
    + """    steps:
      - action: test.poke
"""
)


def poke_labels(name: str = "api") -> dict[str, str]:
    return {"alertname": "Poke", "namespace": "shop", "deployment": name}


def loopback_sso() -> IdentityResolver:
    """The approvals' identities behind an SSO proxy on this machine: its user header
    ``X-Forwarded-User`` believed from loopback peers, and no operator tokens."""
    return IdentityResolver(
        token_table({}),
        sso_header="X-Forwarded-User",
        trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),),
    )


def key_ring(*kids: str) -> KeyRing:
    return KeyRing({k: KEYS[k] for k in kids or ("k1",)})


@dataclass
class Peer:
    """The local HTTP server's state: the counter, the pokes and sets, the notifications."""

    url: str = ""
    value: int = 0
    pokes: int = 0
    # Writes of POST /set (a step that sets the value rather than bumping it).
    sets: int = 0
    notices: list[dict[str, Any]] = field(default_factory=list)
    # The headers of every POST to /notify, answered or not, in order.
    notice_headers: list[dict[str, str]] = field(default_factory=list)
    # The approvers' channel down (a status other than 200 answers each notice, which is then
    # not kept), or slow (each notice waits for ``notify_hold`` before it is answered);
    # ``notify_reached`` is set as soon as a notice comes in, answered or not.
    notify_status: int = 200
    # The Retry-After of such an answer (0: the sender's retries come at once).
    notify_retry_after: str = "0"
    notify_hold: asyncio.Event | None = None
    notify_reached: asyncio.Event = field(default_factory=asyncio.Event)

    def kinds(self) -> list[str]:
        """The approval notices' kinds (run announcements, which have none, left out)."""
        return [n["kind"] for n in self.notices if "kind" in n]

    def announced(self) -> list[str]:
        """The run announcements' events, in order."""
        return [n["event"] for n in self.notices if "event" in n]


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    state = Peer()

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response({"value": state.value})

    async def post_poke(request: web.Request) -> web.Response:
        state.pokes += 1
        state.value += 1
        return web.json_response({"value": state.value})

    async def post_set(request: web.Request) -> web.Response:
        state.value = int((await request.json())["value"])
        state.sets += 1
        return web.json_response({"value": state.value})

    async def post_notify(request: web.Request) -> web.Response:
        state.notify_reached.set()
        state.notice_headers.append(dict(request.headers))
        if state.notify_hold is not None:
            await state.notify_hold.wait()
        if state.notify_status != 200:
            # Retry-After 0 by default: the sender's retries come at once, and it gives up
            # sooner.
            return web.json_response(
                {}, status=state.notify_status, headers={"Retry-After": state.notify_retry_after}
            )
        state.notices.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/state", get_state)
    app.router.add_post("/poke", post_poke)
    app.router.add_post("/set", post_set)
    app.router.add_post("/notify", post_notify)
    server = TestServer(app)
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    try:
        yield state
    finally:
        await server.close()


class PokeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Bump the counter only while it is below this (None: always): at it, the step is a noop.
    up_to: int | None = None


class Poke:
    """``test.poke``: a high-risk step whose change is a counter on the peer, over HTTP.

    preview: reads the counter (the live state the approval binds) and names the alert's
    deployment label, as a step that writes about its alert does (notify, http.call): a run
    taken up after the approval must see the same alert, or the plan would not hash the same.
    run: refuses when the approved preconditions no longer hold, else bumps it."""

    name: ClassVar[str] = "test.poke"
    Params: ClassVar[type[BaseModel]] = PokeParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = False
    # Runs again as a Kubernetes step does (these tests are about approvals, not replays).
    replay_safe: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset({"http"})

    def describe(self, target: Target, params: BaseModel) -> str:
        return f"poke {target.key}"

    async def _value(self, ctx: ActionContext) -> int:
        session: aiohttp.ClientSession = ctx.clients.get("http")
        async with session.get(f"{self.base_url}/state") as response:
            return int((await response.json())["value"])

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        value = await self._value(ctx)
        said = ctx.alert.labels.get("deployment", "")
        up_to = getattr(params, "up_to", None)
        if up_to is not None and value >= up_to:
            return Change(
                f"{target.key} is at {up_to} already",
                {"value": value},
                {"value": value},
                {"value": value},
            )
        return Change(
            f"poke {target.key} once for {said!r}",
            {"value": value},
            {"value": value + 1},
            {"value": value},
        )

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        value = await self._value(ctx)
        if ctx.approved is not None and ctx.approved.get("value") != value:
            raise ActionRefused(f"value moved to {value}")
        up_to = getattr(params, "up_to", None)
        if up_to is not None and value >= up_to:
            return Result(Outcome.NOOP, f"at {up_to} already", {"value": value}, {"value": value})
        session: aiohttp.ClientSession = ctx.clients.get("http")
        async with session.post(f"{self.base_url}/poke") as response:
            after = int((await response.json())["value"])
        said = ctx.alert.labels.get("deployment", "")
        return Result(Outcome.OK, f"poked for {said!r}", {"value": value}, {"value": after})


class DisruptivePoke(Poke):
    """``test.poke`` that draws on the global budget, as a restart does."""

    name: ClassVar[str] = "test.disruptive_poke"
    disruptive: ClassVar[bool] = True


class SlowPreview(Poke):
    """``test.slow_poke``: ``test.poke`` whose preview, once ``hold`` is set, waits for it (a
    target slow to read) and says it is waiting (``previewing``): the window in which another
    replica handles the alert's next event while this one takes an approved step up."""

    name: ClassVar[str] = "test.slow_poke"

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.hold: asyncio.Event | None = None
        self.previewing = asyncio.Event()

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        if self.hold is not None:
            self.previewing.set()
            await self.hold.wait()
        return await super().preview(ctx, target, params)


@dataclass
class ApprovalEnv:
    """A harness whose pipeline has an approval desk; ``identities`` for the HTTP edge."""

    harness: Harness
    desk: ApprovalDesk
    identities: IdentityResolver
    peer: Peer

    async def pending_run(self, name: str = "api") -> tuple[RunRecord, ApprovalRecord]:
        """Deliver a Poke alert: its run parks with one pending approval."""
        await self.harness.deliver(poke_labels(name))
        runs = await self.harness.runs()
        run = await self.harness.store.get_run(runs[0].id)
        assert run is not None
        approval = await self.desk.store.latest_approval(run.id, 0)
        assert approval is not None
        return run, approval

    async def escalated(self, name: str = "api") -> tuple[RunRecord, ApprovalRecord]:
        """Deliver a Poke alert whose rule verifies within a second and has an ``on_failed``
        step that needs an approval: once the verification failed, that step waits for its
        pending approval (returned, with the run)."""
        await self.harness.deliver(poke_labels(name))

        def waiting(run: RunRecord) -> bool:
            return any(
                s.phase == "on_failed" and s.outcome == "awaiting_approval" for s in run.steps
            )

        run = await self.only_run_once(waiting, "the ladder waits for its approval")
        held = next(s for s in run.steps if s.phase == "on_failed")
        approval = await self.desk.store.latest_approval(run.id, held.idx)
        assert approval is not None
        return run, approval

    async def only_run_once(self, accept: Callable[[RunRecord], bool], what: str) -> RunRecord:
        """The harness's only run once ``accept`` takes it, its queue drained before each look
        (15 s at most, then AssertionError naming ``what``): a verification that fails after
        a second, and the escalation its job then runs, take their turns meanwhile."""

        async def probe() -> RunRecord:
            await self.harness.drain()
            return await self.harness.only_run()

        run: RunRecord = await eventually(probe, accept, what=what)
        return run


MakeApprovalEnv = Callable[..., Awaitable[ApprovalEnv]]


@pytest.fixture
async def approval_env(
    make_harness: MakeHarness, peer: Peer, store: Store
) -> AsyncIterator[MakeApprovalEnv]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        *,
        rules: str = POKE_RULES,
        public_url: str | None = "http://remediator.test",
        notify: bool = True,
        ttl_s: float = 1800.0,
        tokens: LinkTokens | None = None,
        metrics: Metrics | None = None,
        policy: ApproverPolicy = POLICY,
        clients: dict[str, Any] | None = None,
        actions: Sequence[Any] = (),
        namespaces: NamespacePolicy | None = None,
        **harness_args: Any,
    ) -> ApprovalEnv:
        session = aiohttp.ClientSession()
        sessions.append(session)
        notifier = Notifier(
            {"ops": Channel("ops", ChannelKind.WEBHOOK, f"{peer.url}/notify")}, session
        )
        desk = ApprovalDesk(
            store,
            policy=policy,
            tokens=tokens or LinkTokens(key_ring("k1")),
            notifier=ChannelNotifier(notifier, "ops") if notify else None,
            public_url=public_url,
            ttl_s=ttl_s,
            log=structlog.get_logger("test.approvals"),
            metrics=metrics,
        )
        harness = await make_harness(
            rules,
            dry_run=False,
            extra_actions=[Poke(peer.url), *actions],
            # The same channels serve the run announcements (a rule's `notify: {channel: ops}`).
            clients={"http": session, "notify": notifier, **(clients or {})},
            approvals=desk,
            metrics=metrics,
            # The harness's `policy` is the namespace policy (this one's, the approvers').
            policy=namespaces,
            **harness_args,
        )
        identities = IdentityResolver(
            token_table({name: SecretStr(token) for name, token in OPERATORS.items()})
        )
        return ApprovalEnv(harness, desk, identities, peer)

    yield make
    for session in sessions:
        await session.close()


async def budget_slots(env: ApprovalEnv) -> list[str]:
    """The run ids holding a slot of the global budget, read from the guards' Redis."""
    members = await env.harness.guards._redis.zrange(env.harness.guards.keys.budget(), 0, -1)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]
