"""Who may decide an approval: identities, and allow-lists per rule or per risk. Pure.

An ``Identity`` comes from an authenticated source only (an operator token mapped to a
name, the trusted header of the SSO proxy when one is configured, or a verified Slack
interaction mapped to a name), never from the link. The same allow-list governs approve and
reject: a person who may not approve a step may not reject it either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["ApproverPolicy", "Identity", "rules_not_loaded"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking. ``name`` is what allow-lists and the audit log use; ``via`` says how it
    was established (``operator-token``, ``sso``, ``slack``); ``subject`` is the source's own
    id (the token's name, the SSO user, ``team/user`` for Slack)."""

    name: str
    via: str
    subject: str = ""


@dataclass(frozen=True, slots=True)
class ApproverPolicy:
    """Allow-lists of approver names. ``by_rule`` wins over ``by_risk`` (``low``/``high``),
    which wins over ``default``. An empty list means nobody: approvals fail closed."""

    by_rule: Mapping[str, frozenset[str]] = field(default_factory=dict)
    by_risk: Mapping[str, frozenset[str]] = field(default_factory=dict)
    default: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        by_rule: Mapping[str, Iterable[str]] | None = None,
        by_risk: Mapping[str, Iterable[str]] | None = None,
        default: Iterable[str] = (),
    ) -> ApproverPolicy:
        """Build from plain lists (as read from a file)."""
        return cls(
            by_rule={k: frozenset(v) for k, v in (by_rule or {}).items()},
            by_risk={k: frozenset(v) for k, v in (by_risk or {}).items()},
            default=frozenset(default),
        )

    def approvers(self, rule: str, risk: str) -> frozenset[str]:
        """The names that may decide a step of ``rule`` with ``risk``."""
        if rule in self.by_rule:
            return self.by_rule[rule]
        if risk in self.by_risk:
            return self.by_risk[risk]
        return self.default

    def allows(self, identity: Identity, rule: str, risk: str) -> bool:
        """Whether ``identity`` may approve or reject a step of ``rule`` with ``risk``."""
        return identity.name in self.approvers(rule, risk)

    @property
    def names(self) -> frozenset[str]:
        """Every name on any of the lists."""
        return self.default.union(*self.by_rule.values(), *self.by_risk.values())

    @property
    def empty(self) -> bool:
        """True when nobody at all may decide (worth a warning at start-up)."""
        return not (self.default or any(self.by_rule.values()) or any(self.by_risk.values()))


def rules_not_loaded(by_rule: Iterable[str], loaded: Iterable[str]) -> list[str]:
    """What is wrong with the approvers' ``by_rule`` keys against the rule names ``loaded``:
    one message per key that names no loaded rule (a typo, or a rule renamed since). Such a
    key decides nothing, and the rule it meant falls to the wider ``by_risk`` or ``default``
    list: a step meant for one approver could be approved by any of them."""
    names = set(loaded)
    return [
        f"approvers file: by_rule names {key!r}, which no loaded rule is called (loaded: "
        f"{', '.join(sorted(names)) or 'none'}): its steps would be decided by the by_risk or "
        "default list instead"
        for key in sorted(set(by_rule) - names)
    ]
