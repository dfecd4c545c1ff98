"""The restart rule most pipeline tests run, and what they run it with: ``RESTART_RULE`` (its
``guards`` a placeholder, ``GUARDS``, each test fills), ``RESTART`` (no guards), ``labels``
of the alert it matches, and ``Bump``/``BUMP``: a disruptive test action that changes
something without a client (so it never runs dry) and the rule that runs it."""

from __future__ import annotations

from pydantic import BaseModel

from receiver.model import Target
from remediations.base import ActionContext, Outcome, Result
from tests.support.pipeline import RESTART_WEB
from tests.support.rules import Restart

RESTART_RULE = RESTART_WEB + "    guards: GUARDS\n"
RESTART = RESTART_RULE.replace("GUARDS", "{}")


def labels(name: str = "web", namespace: str = "shop", **extra: str) -> dict[str, str]:
    """Labels of a HighMemoryUsage alert on Deployment ``namespace``/``name``, plus ``extra``."""
    return {
        "alertname": "HighMemoryUsage",
        "namespace": namespace,
        "deployment": name,
        "severity": "warning",
        **extra,
    }


class Bump(Restart):
    """A disruptive step that changes something (it needs no client, so it never runs dry)."""

    name = "test.bump"
    disruptive = True

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.OK, "bumped")


BUMP = RESTART.replace("kubernetes.rollout_restart", "test.bump")
