"""Rule files for the rules tests: tiny test actions, a good file, and small writers.

The compiler only needs names, params models, risks and target kinds of the actions, so these
stand in for the real ones; the shipped rules are checked against the real registry elsewhere.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from receiver.model import NamespacePolicy
from receiver.rules.compile import lint_files
from remediations.base import (
    ActionContext,
    Change,
    Outcome,
    Registry,
    Result,
    Risk,
)
from remediations.targets import Target


class _Test:
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    risk: ClassVar[Risk]
    disruptive: ClassVar[bool] = False
    replay_safe: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment", "StatefulSet"})

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset()

    def describe(self, target: Target, params: BaseModel) -> str:
        return f"{self.name} {target.key}"

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        return Change(summary=self.describe(target, params))

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.NOOP, "test action")


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delta: int | None = None
    restore: bool = False
    max: int = Field(ge=1)


class GrowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    container: str
    factor: float = Field(gt=0)


class Restart(_Test):
    name = "test.restart"
    Params: ClassVar[type[BaseModel]] = NoParams
    risk = Risk.LOW


class Scale(_Test):
    name = "test.scale"
    Params: ClassVar[type[BaseModel]] = ScaleParams
    risk = Risk.LOW


class Grow(_Test):
    name = "test.grow"
    Params: ClassVar[type[BaseModel]] = GrowParams
    risk = Risk.HIGH


class Undo(_Test):
    name = "test.undo"
    Params: ClassVar[type[BaseModel]] = NoParams
    risk = Risk.HIGH
    target_kinds = frozenset({"Deployment"})


class Vacuum(_Test):
    name = "test.vacuum"
    Params: ClassVar[type[BaseModel]] = NoParams
    risk = Risk.LOW
    target_kinds = frozenset({"PostgresDatabase"})


def registry() -> Registry:
    return Registry([Restart(), Scale(), Grow(), Undo(), Vacuum()])


POLICY = NamespacePolicy()

GOOD = """\
rules:
  - name: restart-on-high-memory
    description: Restart, then grow.
    match: ['alertname="HighMemoryUsage"', 'severity=~"warning|critical"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.restart
      - action: test.grow
        when: {repeated: {times: 2, within: 1h}}
        params: {container: app, factor: 1.5}
        approval: required
    verify: {resolved_within: 10m}
    guards: {cooldown: 15m, max_runs: {count: 3, per: 1h}}
    on_resolved:
      - action: test.scale
        params: {restore: true, max: 5}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(files: dict[str, str], policy: NamespacePolicy = POLICY) -> list[str]:
    return [str(e) for e in lint_files(files, registry(), policy)]


def one_rule(body: str) -> str:
    """A file with one rule whose first lines are fixed: `body` starts at line 4."""
    return "rules:\n  - name: r\n    match: ['alertname=\"A\"']\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


TARGET = 'target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.d }}"}\n'
