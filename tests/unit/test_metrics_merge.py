"""One /metrics for several processes: the children's counters and histograms added in."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from receiver.metrics_merge import merged, parsed

Key = tuple[str, tuple[tuple[str, str], ...]]
BUCKETS = (0.1, 1.0, 10.0)


def _values(text: bytes) -> dict[Key, float]:
    """Every sample of an exposition by (name, labels), checking it is a valid one."""
    types = [line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")]
    helps = [line.split()[2] for line in text.decode().splitlines() if line.startswith("# HELP")]
    assert sorted(types) == sorted(set(types)) == sorted(helps), "a family written twice"
    values: dict[Key, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in values, f"sample {key} written twice"
            values[key] = s.value
    return values


def _types(text: bytes) -> list[str]:
    return [line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")]


class _Process:
    """One process's metrics, shaped like the service's (receiver.telemetry.Metrics)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("remediator_runs", "Runs.", ["rule", "outcome"], registry=r)
        self.steps = Histogram(
            "remediator_step_seconds", "Steps.", ["rule"], buckets=BUCKETS, registry=r
        )
        self.depth = Gauge("remediator_queue_depth", "Queue depth.", registry=r)

    def text(self) -> bytes:
        return generate_latest(self.registry)


def _merge(own: CollectorRegistry, others: Iterable[bytes]) -> bytes:
    return merged(own, [parsed(text) for text in others])


def _sample(name: str, value: float = 0.0, **labels: str) -> tuple[Key, float]:
    return (name, tuple(sorted(labels.items()))), value


def test_no_others_is_generate_latest_byte_for_byte() -> None:
    own = _Process()
    own.runs.labels("restart", "succeeded").inc(2)
    own.runs.labels("scale", "failed").inc(0.25)
    own.steps.labels("restart").observe(0.5)
    own.depth.set(3)
    r = own.registry
    Summary("remediator_waits_seconds", "Waits.", registry=r).observe(1.5)
    Info("remediator_build", "Build.", registry=r).info({"version": "1"})
    Enum("remediator_state", "State.", states=["a", "b"], registry=r).state("b")
    Counter("remediator_untouched", "Never counted.", ["rule"], registry=r)
    Gauge("remediator_weird", 'Help with \\ and "quotes"\nand a line.', registry=r).set(math.nan)

    assert merged(r, []) == generate_latest(r)
    assert _merge(r, [b""]) == generate_latest(r)
    assert merged(CollectorRegistry(), []) == b""


def test_counters_and_histograms_add_up_overlapping_and_disjoint_labels() -> None:
    own, a, b, c = _Process(), _Process(), _Process(), _Process()
    own.runs.labels("restart", "succeeded").inc(1)
    own.steps.labels("restart").observe(0.05)
    a.runs.labels("restart", "succeeded").inc(2)
    a.runs.labels("scale", "failed").inc(4)  # a label set own never saw
    a.steps.labels("restart").observe(5)
    b.runs.labels("restart", "succeeded").inc(8)
    b.runs.labels("scale", "failed").inc(16)
    b.steps.labels("scale").observe(0.5)
    b.steps.labels("scale").observe(50)
    # c counted nothing: its families are empty, and change nothing.

    out = _merge(own.registry, [a.text(), b.text(), c.text()])
    got = _values(out)

    runs = "remediator_runs_total"
    assert got[_sample(runs, rule="restart", outcome="succeeded")[0]] == 11
    assert got[_sample(runs, rule="scale", outcome="failed")[0]] == 20
    steps = "remediator_step_seconds"
    expected = {
        "restart": ({"0.1": 1, "1.0": 1, "10.0": 2, "+Inf": 2}, 5.05),
        "scale": ({"0.1": 0, "1.0": 1, "10.0": 1, "+Inf": 2}, 50.5),
    }
    for rule, (buckets, total) in expected.items():
        for le, count in buckets.items():
            assert got[_sample(f"{steps}_bucket", rule=rule, le=le)[0]] == count
        assert got[_sample(f"{steps}_count", rule=rule)[0]] == buckets["+Inf"]
        assert math.isclose(got[_sample(f"{steps}_sum", rule=rule)[0]], total)
    # The new label set's samples sit in own's families, not in a family written again.
    assert _types(out) == _types(own.text())
    # A label set appended after own's keeps its buckets, count and sum together, in order.
    lines = [ln for ln in out.decode().splitlines() if ln.startswith(steps) and "created" not in ln]
    assert [ln.split("{")[0].split(" ")[0] for ln in lines] == 2 * [
        *4 * [f"{steps}_bucket"],
        f"{steps}_count",
        f"{steps}_sum",
    ]


def test_a_family_own_lacks_is_added_after_owns_as_it_is() -> None:
    own = _Process()
    child = _Process()
    only = Counter(
        "remediator_child_only", "Only the child has it.", ["rule"], registry=child.registry
    )
    only.labels("restart").inc(3)
    seconds = Histogram(
        "remediator_child_wait", "Waits.", unit="seconds", buckets=BUCKETS, registry=child.registry
    )
    seconds.observe(2)

    out = _merge(own.registry, [child.text()])

    assert _types(out) == [
        *_types(own.text()),
        "remediator_child_only_total",
        "remediator_child_only_created",
        "remediator_child_wait_seconds",
        "remediator_child_wait_seconds_created",
    ]
    child_lines = {ln for ln in child.text().decode().splitlines() if "child_" in ln}
    assert child_lines <= set(out.decode().splitlines())


def _with_created(name: str, created: dict[str, float], value: float = 1.0) -> bytes:
    """An exposition of one counter labelled by rule, with the creation times given."""
    family = CounterMetricFamily(name, "Runs.", labels=["rule", "outcome"])
    for rule, ts in created.items():
        family.add_metric([rule, "succeeded"], value, created=ts)

    class _One:
        def collect(self) -> list[Metric]:
            return [family]

    return generate_latest(_One())


def test_created_is_the_earliest_not_the_sum() -> None:
    own = _Process()
    own.runs.labels("restart", "succeeded").inc()
    mine = _values(own.text())[
        _sample("remediator_runs_created", rule="restart", outcome="succeeded")[0]
    ]
    earlier, later = mine - 1000.0, mine + 1000.0
    first = _with_created("remediator_runs", {"restart": earlier, "scale": later})
    second = _with_created("remediator_runs", {"restart": later, "scale": later - 1})

    got = _values(_merge(own.registry, [first, second]))

    created = "remediator_runs_created"
    assert got[_sample(created, rule="restart", outcome="succeeded")[0]] == earlier
    assert got[_sample(created, rule="scale", outcome="succeeded")[0]] == later - 1
    assert got[_sample("remediator_runs_total", rule="restart", outcome="succeeded")[0]] == 3
    # And with own the earliest, own's stays.
    got = _values(_merge(own.registry, [second]))
    assert got[_sample(created, rule="restart", outcome="succeeded")[0]] == mine


def test_gauges_and_the_like_of_others_are_ignored() -> None:
    own, child = _Process(), _Process()
    own.depth.set(2)
    child.depth.set(7)
    Gauge("remediator_child_gauge", "Child only.", registry=child.registry).set(1)
    Info("remediator_child_build", "Build.", registry=child.registry).info({"v": "2"})
    Enum("remediator_child_state", "S.", states=["a"], registry=child.registry).state("a")
    untyped = (
        b"# HELP remediator_loose Loose.\n# TYPE remediator_loose untyped\nremediator_loose 5.0\n"
    )

    out = _merge(own.registry, [child.text(), untyped])

    assert out == generate_latest(own.registry)


def test_merged_ignores_gauges_handed_to_it_directly() -> None:
    own = _Process()
    own.depth.set(2)
    child = GaugeMetricFamily("remediator_queue_depth", "Queue depth.", value=7)
    stranger = GaugeMetricFamily("remediator_child_gauge", "Child only.", value=1)

    assert merged(own.registry, [[child, stranger]]) == generate_latest(own.registry)


def test_a_family_of_another_type_in_a_child_is_left_out() -> None:
    own = CollectorRegistry()
    Gauge("remediator_thing", "A gauge here.", registry=own).set(4)
    child = CollectorRegistry()
    Counter("remediator_thing", "A counter there.", registry=child).inc(9)

    assert _merge(own, [generate_latest(child)]) == generate_latest(own)


GOOD_BUCKET = b'# TYPE h histogram\nh_bucket{le="+Inf"} 1.0\nh_count 1.0\nh_sum 1.0\n'


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b"remediator_runs_total \xff\n", "not UTF-8"),
        (b"garbage\n", "does not parse"),
        (b"# TYPE x bogus\nx 1\n", "does not parse"),
        (b'# TYPE x_total counter\nx_total{rule="a"} 35.0', "cut short"),
        # The parser folds a family written twice in a row into one: this one is apart.
        (
            b"# TYPE h histogram\nh_count 1.0\n# TYPE g gauge\ng 1.0\n"
            b"# TYPE h histogram\nh_count 2.0\n",
            "family 'h' appears twice",
        ),
        (b"# TYPE x_total counter\nx_total 1.0\nx_total 2.0\n", "x_total{} appears twice"),
        (b'# TYPE s summary\ns{quantile="0.5"} 1.0\n', "sample 's' in summary"),
        (GOOD_BUCKET.replace(b'{le="+Inf"}', b""), "without le"),
    ],
)
def test_bad_text_raises_and_the_others_still_merge(text: bytes, error: str) -> None:
    own, a, b = _Process(), _Process(), _Process()
    a.runs.labels("restart", "succeeded").inc(2)
    b.runs.labels("restart", "succeeded").inc(3)
    assert parsed(GOOD_BUCKET)  # the bucket case differs from a good text only in its le

    with pytest.raises(ValueError, match=error):
        parsed(text)

    # As the HTTP process does: each child's text on its own, a bad one logged and left out.
    families, refused = [], []
    for other in [a.text(), text, b.text()]:
        try:
            families.append(parsed(other))
        except ValueError as problem:
            refused.append(str(problem))
    got = _values(merged(own.registry, families))
    assert len(refused) == 1
    assert got[_sample("remediator_runs_total", rule="restart", outcome="succeeded")[0]] == 5


# One increment: which process, which rule, a counter amount and an observed duration.
Step = tuple[int, str, float, float]
steps_st = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(["restart", "scale", "drain", "cordon"]),
        st.floats(0, 1e6, allow_nan=False),
        st.floats(-1, 100, allow_nan=False),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps=steps_st, processes=st.integers(1, 4))
def test_merged_equals_one_registry_that_counted_everything(
    steps: Sequence[Step], processes: int
) -> None:
    everything = _Process()
    split = [_Process() for _ in range(processes)]
    for where, rule, amount, seconds in steps:
        for p in (everything, split[where % processes]):
            p.runs.labels(rule, "succeeded").inc(amount)
            p.steps.labels(rule).observe(seconds)

    out = _merge(split[0].registry, [p.text() for p in split[1:]])

    def counted(text: bytes) -> dict[Key, float]:
        return {k: v for k, v in _values(text).items() if not k[0].endswith("_created")}

    got, want = counted(out), counted(everything.text())
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-6), key
    # Each label set's creation time is the earliest of the processes' that have it.
    earliest: dict[Key, float] = {}
    for p in split:
        for key, value in _values(p.text()).items():
            if key[0].endswith("_created"):
                earliest[key] = min(value, earliest.get(key, math.inf))
    assert {k: v for k, v in _values(out).items() if k[0].endswith("_created")} == earliest
