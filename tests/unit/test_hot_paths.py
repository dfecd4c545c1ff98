"""The per-event pieces made cheaper for a storm (issue 12) give what they gave before.

Each is pinned against the computation it replaced: the run id against ``uuid.uuid5``, a
rule's derived values against the walk over its steps they were, a target's rendering
against a fresh rendering and validation (the same target, the same error), the params copy
against a deep copy, the history read's rows against the sort and filters they had."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.facts import FactKind
from receiver.model import (
    GuardSpec,
    History,
    NamespacePolicy,
    PriorRun,
    RunOutcome,
    StepPlan,
    Target,
)
from receiver.rules.compile import compile_files
from receiver.rules.model import Rule, RuleSet
from receiver.store.history import history_from_rows, prior_from_row
from receiver.store.records import run_id_of
from receiver.store.undo_plans import undo_as_json, undo_from_json
from receiver.templating import (
    Template,
    TemplateError,
    compile_template,
    render_target,
    validate_target,
)
from remediations.durations import format_duration
from remediations.targets import TargetError
from tests.support.rules import GOOD, POLICY, registry

_RUN_IDS = uuid.UUID("6f1d3c2a-8b7e-5c4d-9a1f-2e3b4c5d6e7f")


@given(st.text(), st.text(), st.text(), st.integers(min_value=0, max_value=10**6))
def test_run_id_is_uuid5_of_the_occurrence(
    rule: str, fingerprint: str, starts_at: str, refire: int
) -> None:
    name = "\x1f".join((rule, fingerprint, starts_at, str(refire)))
    assert run_id_of(rule, fingerprint, starts_at, refire) == str(uuid.uuid5(_RUN_IDS, name))


def test_run_id_of_a_name_utf8_cannot_encode_fails_as_uuid5_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        uuid.uuid5(_RUN_IDS, "\ud800")
    with pytest.raises(UnicodeEncodeError):
        run_id_of("\ud800", "f", "s", 0)


# -- a rule's derived values ---------------------------------------------------------------


def _walked(rule: Rule) -> tuple[GuardSpec, float | None, frozenset[FactKind], bool]:
    """What the properties computed from the steps on every call before."""
    windows = [s.repeated.within_s for s in rule.steps if s.repeated is not None]
    return (
        GuardSpec(rule.cooldown_s, rule.max_runs, rule.max_runs_per_s),
        max(windows) if windows else None,
        frozenset(c.fact for s in rule.steps for c in s.conditions),
        any(s.repeated is not None or s.conditions for s in rule.steps),
    )


def _derived(rule: Rule) -> tuple[GuardSpec, float | None, frozenset[FactKind], bool]:
    return (rule.guards, rule.widest_window_s, rule.facts, rule.has_conditions)


def _good_rule() -> Rule:
    (rule,) = compile_files({"rules/a.yaml": GOOD}, registry(), POLICY).rules
    return rule


def test_a_rules_derived_values_are_worked_out_once_and_are_what_its_steps_say() -> None:
    rule = _good_rule()
    assert _derived(rule) == _walked(rule)
    assert rule.widest_window_s == 3600.0
    # Once, when the rule is built: not a new object (nor a new walk) per event.
    assert rule.guards is rule.guards
    assert rule.facts is rule.facts


def test_a_rule_replaced_works_its_values_out_again_and_compares_as_before() -> None:
    rule = _good_rule()
    plain = dataclasses.replace(
        rule, steps=rule.steps[:1], cooldown_s=None, max_runs=None, max_runs_per_s=None
    )
    assert _derived(plain) == _walked(plain) == (GuardSpec(), None, frozenset(), False)
    # The derived fields take no part in equality or repr.
    again = dataclasses.replace(rule)
    assert again == rule
    assert "_guards" not in repr(rule)


def test_a_rule_set_knows_its_widest_window() -> None:
    rule = _good_rule()
    assert RuleSet([rule], {}).widest_window_s == 3600.0
    plain = dataclasses.replace(rule, name="plain", steps=rule.steps[:1])
    assert RuleSet([plain], {}).widest_window_s is None
    assert RuleSet([], {}).widest_window_s is None


# -- target rendering ----------------------------------------------------------------------

# Label values that pass and fail the namespace's and the name's validation alike.
_VALUES = st.one_of(
    st.sampled_from(["", "shop", "kube-system", "web-1", "Web", "a.b", "-x", "a" * 64]),
    st.text(alphabet="ab-.1/Z", max_size=6),
)
_POLICIES = st.sampled_from(
    [NamespacePolicy(), NamespacePolicy(allow=("shop",)), NamespacePolicy(deny=("shop",))]
)
_TEMPLATES = st.sampled_from(
    [
        "{{ labels.namespace }}",
        "{{ labels.deployment }}",
        "{{ labels.deployment }}-worker",
        "x{{ annotations.ns }}",
        '{{ labels["app.kubernetes.io/name"] }}',
        "{{ labels.namespace }}{{ labels.deployment }}",
        "fixed",
    ]
)
_KINDS = st.sampled_from(["Deployment", "Pod", "PostgresDatabase", "RedisQueue", "Nope"])


def _outcome(render: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("target", render(*args))
    except (TemplateError, TargetError) as exc:
        return (type(exc).__name__, str(exc))


def _rendered_afresh(
    kind: str,
    namespace_tpl: Template,
    name_tpl: Template,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    policy: NamespacePolicy,
    kinds: frozenset[str] | None,
) -> Target:
    """Rendering as it was: each reference substituted, then the target validated."""
    sources = {"labels": labels, "annotations": annotations}

    def render(template: Template) -> str:
        out: list[str] = []
        for part in template.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = sources[part[0]].get(part[1], "")
            if not value:
                raise TemplateError(
                    f"{part[0][:-1]} {part[1]!r} used by template {template.source!r} is "
                    "missing or empty"
                )
            out.append(value)
        return "".join(out)

    target = Target(kind, render(namespace_tpl), render(name_tpl))
    validate_target(target, policy, kinds)
    return target


@given(
    kind=_KINDS,
    templates=st.tuples(_TEMPLATES, _TEMPLATES),
    labels=st.dictionaries(
        st.sampled_from(["namespace", "deployment", "app.kubernetes.io/name"]), _VALUES
    ),
    annotations=st.dictionaries(st.just("ns"), _VALUES),
    policies=st.lists(_POLICIES, min_size=1, max_size=3),
    kinds=st.sampled_from([None, frozenset({"Deployment"}), frozenset({"Pod", "RedisQueue"})]),
)
def test_a_target_renders_as_afresh_every_time(
    kind: str,
    templates: tuple[str, str],
    labels: dict[str, str],
    annotations: dict[str, str],
    policies: list[NamespacePolicy],
    kinds: frozenset[str] | None,
) -> None:
    namespace_tpl, name_tpl = (compile_template(t) for t in templates)
    # The same alert under several policies, twice each: what one rendering remembered never
    # answers for another policy, and a refusal is refused again.
    for policy in [*policies, *policies]:
        args = (kind, namespace_tpl, name_tpl, labels, annotations, policy, kinds)
        assert _outcome(render_target, *args) == _outcome(_rendered_afresh, *args)


# -- the params copy and the duration spelling ---------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _JSON, max_size=4))
def test_a_step_plans_params_are_a_deep_copy(params: dict[str, Any]) -> None:
    rule = _good_rule()
    step = dataclasses.replace(rule.steps[0], params=params)
    planned = step.to_plan().params
    assert planned == copy.deepcopy(params)
    # Nothing shared: mutating the plan's copy leaves the rule's params alone.
    kept = copy.deepcopy(params)
    _scramble(planned)
    assert params == kept


def _scramble(value: Any) -> None:
    if isinstance(value, dict):
        for key in list(value):
            _scramble(value[key])
            value[key] = "changed"
    elif isinstance(value, list):
        for item in value:
            _scramble(item)
        value.append("added")


@pytest.mark.parametrize("seconds", [0, 0.5, 59, 60, 5400, 3600.0, 90061.5, 1e-4])
def test_a_duration_is_spelt_the_same_every_time(seconds: float) -> None:
    first = format_duration(seconds)
    assert format_duration(seconds) == first
    assert format_duration.__wrapped__(seconds) == first


def test_a_negative_duration_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="negative duration"):
            format_duration(-1.0)


# -- the history read's rows ---------------------------------------------------------------

_PARTS = st.sampled_from(["episode", "recent", "settling", "other", "held", None])


def _history_row(n: int, part: str | None, pos: int) -> dict[str, Any]:
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC) + timedelta(seconds=n)
    return {
        "part": part,
        "pos": pos,
        "episode_resolved": n % 2 == 0,
        "id": uuid.UUID(int=n),
        "rule": f"rule-{n % 3}",
        "fingerprint": f"fp{n}",
        "starts_at": "2026-12-01T09:00:00Z",
        "alertname": "HighMemoryUsage",
        "event_id": n,
        "target_kind": "Deployment",
        "target_namespace": "shop",
        "target_name": f"web-{n}",
        "outcome": "refused",
        "created_at": at,
        "closed": False,
        "refire": 0,
        "settle_until": None,
        "changed": False,
        "on_resolved": None,
    }


def _history_as_it_was(rows: list[dict[str, Any]]) -> History:
    """The sort of every row by ``pos``, then a filter per part, that history() did before."""
    found = sorted((r for r in rows if r["part"] is not None), key=lambda r: r["pos"])
    episode = [r for r in found if r["part"] == "episode"]
    recent = [r for r in found if r["part"] == "recent"]
    settle = [r for r in found if r["part"] == "settling"]
    other = [r for r in found if r["part"] in ("other", "held")]
    return History(
        episode_runs=tuple(prior_from_row(r) for r in episode),
        recent_runs=tuple(prior_from_row(r) for r in reversed(recent)),
        episode_resolved=bool(rows[0]["episode_resolved"]),
        settling_runs=tuple(prior_from_row(r) for r in settle),
        other_runs=tuple(prior_from_row(r, held=r["part"] == "held") for r in other),
    )


@given(st.lists(st.tuples(_PARTS, st.integers(min_value=1, max_value=6)), min_size=1), st.randoms())
def test_the_history_of_rows_in_any_order_is_as_before(
    parts: list[tuple[str | None, int]], random: Random
) -> None:
    # Rows of one pos in a part included (the 'other' and 'held' rows share their numbering).
    rows = [_history_row(n, part, pos) for n, (part, pos) in enumerate(parts)]
    random.shuffle(rows)
    assert history_from_rows(rows) == _history_as_it_was(rows)


_UNDO = undo_as_json(
    [StepPlan(index=0, action="kubernetes.rollout_undo", params={"a": [1]}, needs_approval=False)]
)


@given(
    n=st.integers(min_value=0, max_value=2**31),
    kind=st.sampled_from(["Deployment", "PostgresDatabase"]),
    namespace=st.sampled_from(["shop", ""]),
    outcome=st.sampled_from([*(o.value for o in RunOutcome), "no-such-outcome"]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    refire=st.integers(min_value=0, max_value=5),
    settle_until=st.none() | st.just(datetime(2026, 12, 1, 11, 0, tzinfo=UTC)),
    kept=st.sampled_from([None, _UNDO]),
)
def test_a_history_row_decodes_as_the_keyword_construction_does(
    n: int,
    kind: str,
    namespace: str,
    outcome: str,
    flags: tuple[bool, bool, bool],
    refire: int,
    settle_until: datetime | None,
    kept: str | None,
) -> None:
    closed, changed, held = flags
    row = _history_row(n, "other", 1) | {
        "target_kind": kind,
        "target_namespace": namespace,
        "outcome": outcome,
        "closed": closed,
        "changed": changed,
        "refire": refire,
        "settle_until": settle_until,
        "on_resolved": kept,
    }

    def as_it_was() -> PriorRun:
        return PriorRun(
            on_resolved=None if kept is None else undo_from_json(kept),
            run_id=str(row["id"]),
            rule=row["rule"],
            target=Target(kind, namespace, row["target_name"]),
            fingerprint=row["fingerprint"],
            starts_at=row["starts_at"],
            created_at=row["created_at"],
            outcome=RunOutcome(outcome),
            closed=closed,
            refire=refire,
            event_id=row["event_id"],
            changed=changed,
            alertname=row["alertname"],
            settle_until=settle_until,
            undo_held=held,
        )

    if outcome == "no-such-outcome":
        with pytest.raises(ValueError, match="no-such-outcome"):
            prior_from_row(row, held=held)
        with pytest.raises(ValueError, match="no-such-outcome"):
            as_it_was()
        return
    decoded = prior_from_row(row, held=held)
    assert decoded == as_it_was()
    assert type(decoded.outcome) is RunOutcome
    assert type(decoded.target) is Target
