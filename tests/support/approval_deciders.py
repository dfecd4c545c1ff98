"""Who decides the approval tests' held steps, and from where: ``ALICE`` and ``BOB`` (approvers
of the ``poke`` rule in tests/support/approvals.py's policy), ``CAROL`` (no approver of it), all
by ``API``; and ``UP_TO_ONE``, the poke step's text (in ``POKE_RULES``) made a step that counts up
to 1 only, which is in place already once the counter is at 1."""

from __future__ import annotations

from receiver.approvals.policy import Identity
from receiver.approvals.state import Channel, Origin

__all__ = ["ALICE", "API", "BOB", "CAROL", "UP_TO_ONE"]

ALICE = Identity("alice", "operator-token", "alice")
BOB = Identity("bob", "operator-token", "bob")
CAROL = Identity("carol", "operator-token", "carol")
API = Origin(Channel.API, "10.1.1.1", "pytest")


UP_TO_ONE = "- action: test.poke\n        params: {up_to: 1}"
