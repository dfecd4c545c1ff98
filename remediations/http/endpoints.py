"""``http.call``: POST JSON to an endpoint from the allow-list in configuration.

A rule names an endpoint (target kind ``HttpEndpoint``, e.g. ``{{ labels.service }}_flush``);
the URL, the headers (secrets from files) and the timeouts come from configuration, so no alert
label and no rule can send a request anywhere the operator did not list. The body is the rule's
``body``, its strings rendered as templates over the alert (``remediations.templates``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, Field, field_validator

from remediations.base import (
    ActionContext,
    ActionRefused,
    Change,
    Outcome,
    ParamsError,
    Result,
    Risk,
)
from remediations.http.post import HttpPolicy, host_of, json_body, post_json
from remediations.json_values import not_json
from remediations.params import StrictParams
from remediations.targets import Target
from remediations.templates import check_template, render, template_values
from remediations.tls import TlsTrust

__all__ = ["Endpoint", "HttpCall", "HttpCallParams", "HttpEndpoints", "idempotency_key"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One allow-listed URL. ``headers`` may hold credentials: ``repr()`` shows their names.
    ``secrets`` are those of the header values that are credentials (read from files): they are
    redacted from any response excerpt, as the URL's path and query are."""

    name: str
    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    policy: HttpPolicy = field(default_factory=HttpPolicy)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # The CA bundle its certificate is checked against (``ca_file``); None: the system's.
    tls: TlsTrust | None = field(default=None, repr=False)

    @property
    def trust(self) -> TlsTrust:
        """What its server's certificate is checked against, and the setting that says so."""
        return self.tls or TlsTrust(f"http.endpoints.{self.name}.ca_file")

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint {self.name!r}: the URL must be http(s)://host/...")

    @property
    def host(self) -> str:
        return host_of(self.url)

    @property
    def destination(self) -> dict[str, str]:
        """What an approval of a call to this endpoint is bound to: its origin as it is, and a
        digest of the whole URL and every header (name and value), which may hold secrets and
        so are never shown. An endpoint reconfigured between the request and the click (another
        path, query or header) makes another plan, which supersedes the approval: the approver
        never sends to a URL they did not see the plan for."""
        parts = urlsplit(self.url)
        digest = hashlib.sha256(self.url.encode())
        for name, value in sorted(self.headers.items()):
            digest.update(b"\0" + name.lower().encode() + b"\0")
            digest.update(hashlib.sha256(value.encode()).digest())
        return {
            "endpoint": f"{parts.scheme}://{host_of(self.url)}",
            "configuration": f"sha256:{digest.hexdigest()[:16]}",
        }


class HttpEndpoints:
    """The ``Clients`` value under ``"http"``: one aiohttp session and the allow-listed
    endpoints. ``close()`` closes the session when this object owns it."""

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        session: aiohttp.ClientSession,
        *,
        owns_session: bool = False,
    ) -> None:
        self.endpoints: Mapping[str, Endpoint] = MappingProxyType(dict(endpoints))
        self.session = session
        self._owns = owns_session

    def __repr__(self) -> str:
        return f"HttpEndpoints({sorted(self.endpoints)})"

    def get(self, name: str) -> Endpoint:
        """The endpoint called ``name``. Raises ActionRefused naming the configured ones."""
        try:
            return self.endpoints[name]
        except KeyError:
            known = ", ".join(sorted(self.endpoints)) or "none"
            raise ActionRefused(
                f"no HTTP endpoint named {name!r} is configured (configured: {known})"
            ) from None

    async def close(self) -> None:
        if self._owns:
            await self.session.close()


def _check_values(value: Any) -> Any:
    """``value`` if each string in it is a template and each other value is one JSON has
    (``json_values.not_json``); raises ValueError naming the first that is not by its place
    (``at body.a[0]``)."""
    for path, problem in not_json(value, ("body",)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        raise ValueError(f"at {where.lstrip('.')}: {problem}")
    _check_strings(value)
    return value


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        check_template(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def _render_strings(value: Any, values: Mapping[str, Any], where: str = "body") -> Any:
    """``value`` with its strings rendered; ``where`` (``body.a[0]``) names each in errors."""
    if isinstance(value, str):
        return render(value, values, name=where)
    if isinstance(value, Mapping):
        return {k: _render_strings(v, values, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render_strings(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# How deep a body's objects and lists may nest (the body itself is level 1): far beyond any
# webhook's payload, far below what the params' trip through JSON can take (pydantic stops at
# 255 levels, which failed the whole load as "please report this", naming no rule).
MAX_BODY_DEPTH = 64


def _depth(value: Any) -> int:
    """Levels of objects and lists in ``value`` (0 for a scalar), counted layer by layer: no
    recursion, so a body of thousands of levels is measured, not a RecursionError."""
    level, layer = 0, [value]
    while True:
        inner: list[Any] = []
        nested = False
        for item in layer:
            if isinstance(item, Mapping):
                inner.extend(item.values())
                nested = True
            elif isinstance(item, list):
                inner.extend(item)
                nested = True
        if not nested:
            return level
        level, layer = level + 1, inner


class HttpCallParams(StrictParams):
    """``body``: the JSON object to POST; its strings are templates over the alert. At most
    64 KiB as JSON, its objects and lists nested at most ``MAX_BODY_DEPTH`` levels deep."""

    template_fields: ClassVar[frozenset[str]] = frozenset({"body"})

    body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("body")
    @classmethod
    def _templates(cls, value: dict[str, Any]) -> dict[str, Any]:
        depth = _depth(value)
        if depth > MAX_BODY_DEPTH:
            raise ValueError(
                f"its objects and lists are nested {depth} levels deep; at most {MAX_BODY_DEPTH}"
            )
        _check_values(value)  # first: json.dumps fails on a date, and writes inf as Infinity
        if len(json.dumps(value)) > 65536:
            raise ValueError("body is larger than 64 KiB")
        return value


def idempotency_key(ctx: ActionContext, endpoint: str, digest: str) -> str:
    """The ``Idempotency-Key`` of one step's POST: ``<run id>.<phase>.<step>-<endpoint>-<body
    digest>`` (``<run id>-<endpoint>-<digest>`` for a call outside a run's steps). The same on
    every retry of the step, so a receiver that deduplicates takes it once; another for each
    step, so two identical calls of one run (a step and an on_failed step) are both taken."""
    step = "" if ctx.step is None else f".{ctx.phase}.{ctx.step}"
    return f"{ctx.run_id}{step}-{endpoint}-{digest}"


class HttpCall:
    """POST the rule's JSON body to an allow-listed endpoint (target: HttpEndpoint).

    High risk: the service cannot know what an endpoint does, so a step needs approval unless
    its rule says ``approval: never``. Dry-run sends nothing.
    """

    name: ClassVar[str] = "http.call"
    Params: ClassVar[type[BaseModel]] = HttpCallParams
    risk: ClassVar[Risk] = Risk.HIGH
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"HttpEndpoint"})
    # What an endpoint does with a second POST is up to it: only one that deduplicates on the
    # Idempotency-Key ignores it. So a step taken up after a crash that may have come after
    # the POST is not sent again (Action.replay_safe).
    replay_safe: ClassVar[bool] = False

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset({"http"})

    def describe(self, target: Target, params: BaseModel) -> str:
        self._params(params)
        return f"POST JSON to HTTP endpoint {target.name!r}"

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        endpoint, body = self._prepare(ctx, target, self._params(params))
        # The bytes post_json will send (json_body), not another serialization of the body.
        return Change(
            f"POST {len(json_body(body))} bytes of JSON to endpoint {endpoint.name!r} "
            f"({endpoint.host})",
            {},
            {"body": body},
            preconditions=endpoint.destination,
        )

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        typed = self._params(params)
        endpoint, body = self._prepare(ctx, target, typed)
        if ctx.approved is not None and dict(ctx.approved) != endpoint.destination:
            # The pipeline supersedes such an approval first (the plan's hash differs); this
            # holds even if a caller skipped that.
            raise ActionRefused(
                f"endpoint {endpoint.name!r} is not configured as it was when approved "
                f"(approved {dict(ctx.approved)}, now {endpoint.destination})"
            )
        if ctx.dry_run:
            change = await self.preview(ctx, target, typed)
            return Result(Outcome.DRY_RUN, f"dry run (nothing sent): {change.summary}")
        client: HttpEndpoints = ctx.clients.get("http")
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        posted = await post_json(
            client.session,
            endpoint.url,
            body,
            what=f"endpoint {endpoint.name!r}",
            policy=endpoint.policy,
            secrets=endpoint.secrets,
            trust=endpoint.trust,
            headers={
                **endpoint.headers,
                "X-Remediator-Run-Id": ctx.run_id,
                "Idempotency-Key": idempotency_key(ctx, endpoint.name, digest),
            },
        )
        return Result(
            Outcome.OK,
            f"endpoint {endpoint.name!r} ({endpoint.host}) answered HTTP {posted.status}"
            + (f" after {posted.attempts} attempts" if posted.attempts > 1 else "")
            + (f" (its body broke off: {posted.broke})" if posted.broke else ""),
            {},
            {"status": posted.status, "response": posted.body, "attempts": posted.attempts},
        )

    def render_check(self, ctx: ActionContext, target: Target, params: BaseModel) -> None:
        """Render the body as ``run`` would (``remediations.base.RendersTemplates``); raises
        TemplateFailed when a string of it cannot be rendered over this alert."""
        _render_strings(self._params(params).body, template_values(ctx, target))

    def _prepare(
        self, ctx: ActionContext, target: Target, params: HttpCallParams
    ) -> tuple[Endpoint, dict[str, Any]]:
        if target.kind not in self.target_kinds:
            raise ActionRefused(f"{self.name} acts on HttpEndpoint, not {target.kind}")
        client: HttpEndpoints = ctx.clients.get("http")
        endpoint = client.get(target.name)
        body = _render_strings(params.body, template_values(ctx, target))
        return endpoint, body

    def _params(self, params: BaseModel) -> HttpCallParams:
        if not isinstance(params, HttpCallParams):
            raise ParamsError(self.name, f"expected HttpCallParams, got {type(params)}")
        return params
