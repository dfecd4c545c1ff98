"""One /metrics exposition for a service of several processes: the children's counts added in.

The HTTP process answers /metrics for all of them: each child worker process writes its own
registry with ``generate_latest``; the parent reads every text with ``parsed`` (one at a time,
so a bad one is left out alone) and ``merged`` adds them into its own registry's exposition.

Pure: prometheus_client only; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["KeptCounts", "Reading", "merged", "parsed"]

# The sample-name suffixes of the families whose values add up across processes, by type. A
# summary's quantiles (the bare name) cannot be added, so a text with them is refused:
# prometheus_client's Summary writes none.
_SUMMED: dict[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}
_CREATED = "_created"

_Key: TypeAlias = tuple[str, tuple[tuple[str, str], ...]]


def _key(sample: Sample) -> _Key:
    return sample.name, tuple(sorted(sample.labels.items()))


def parsed(text: bytes) -> list[Metric]:
    """The families of one other process's exposition that ``merged`` adds, checked.

    ``text`` is what ``generate_latest`` wrote (text format 0.0.4). Returned: its counter,
    histogram and summary families as ``CollectorRegistry.collect()`` yields them, that is with
    the ``<name>_created`` samples, which the text format writes as a gauge family of their own,
    folded back into their family; gauges, untyped, info and stateset families are left out.

    Raises ValueError (naming what is wrong) when the bytes are not UTF-8, the text does not end
    in a newline (a write cut short), the parser refuses it, a family or a sample appears twice,
    a sample's name does not fit its family's type, or a histogram bucket has no ``le``.
    """
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"exposition is not UTF-8: {error}") from None
    if text and not text.endswith(b"\n"):
        # Every line generate_latest writes ends in one; a text cut short may still parse
        # ("…} 35.0" cut to "…} 3") and would count wrong.
        raise ValueError("exposition does not end in a newline: cut short?")
    try:
        families = list(text_string_to_metric_families(decoded))
    except ValueError as error:
        raise ValueError(f"exposition does not parse: {error!r}") from None
    kept: dict[str, Metric] = {}
    seen_names: set[str] = set()
    seen_samples: set[_Key] = set()
    for family in families:
        if family.name in seen_names:
            raise ValueError(f"family {family.name!r} appears twice")
        seen_names.add(family.name)
        stem = family.name.removesuffix(_CREATED)
        if family.type == "gauge" and stem != family.name and stem in kept:
            suffixes: tuple[str, ...] = (_CREATED,)
            target = kept[stem]
        elif family.type in _SUMMED:
            suffixes = _SUMMED[family.type]
            target = kept[family.name] = Metric(
                family.name, family.documentation, family.type, family.unit
            )
        else:
            continue
        for sample in family.samples:
            if sample.name not in {stem + suffix for suffix in suffixes}:
                raise ValueError(f"sample {sample.name!r} in {family.type} {family.name!r}")
            if sample.name == stem + "_bucket" and "le" not in sample.labels:
                raise ValueError(f"bucket of {stem!r} without le: {sample.labels}")
            if _key(sample) in seen_samples:
                raise ValueError(f"sample {sample.name}{sample.labels} appears twice")
            seen_samples.add(_key(sample))
            target.samples.append(sample)
    return list(kept.values())


class _Families:
    """A collector that yields the families given: generate_latest renders them."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merged(own: CollectorRegistry, others: Sequence[Sequence[Metric]]) -> bytes:
    """``own``'s exposition (text format 0.0.4, by ``generate_latest``) with ``others`` added.

    ``others``: per other process, the families ``parsed`` returned for its exposition (one a
    process; a text that did not parse is the caller's to leave out). For the counter,
    histogram and summary families of each:

    - every sample's value is added to own's sample of the same name and labels
      (``_total``, ``_bucket`` per ``le``, ``_count``, ``_sum``); a sample own lacks (another
      label set, a rule only a child ran) is added to own's family, after own's samples;
    - a ``_created`` sample is the earliest of all, not the sum;
    - a family own lacks is added as it is, after own's families, in the order first seen;
    - a family own has with another type (a child of another version) is left out.

    Gauges (and untyped, info, stateset) of others are ignored: gauges are the HTTP process's
    own state (queue depth, readiness); a child's would add zeros or stale values.

    Each family's HELP and TYPE are written once, own's families first in own's order, and the
    values are rendered by ``generate_latest`` itself. With no others the result is byte for byte
    ``generate_latest(own)``.
    """
    families: dict[str, Metric] = {}
    samples: dict[str, dict[_Key, Sample]] = {}
    for family in own.collect():
        families[family.name] = family
        samples[family.name] = {_key(s): s for s in family.samples}
    for other in others:
        for family in other:
            if family.type not in _SUMMED:
                continue
            mine = families.setdefault(family.name, family)
            if mine.type != family.type:
                continue
            into = samples.setdefault(family.name, {})
            for sample in family.samples:
                key = _key(sample)
                old = into.get(key)
                if old is None:
                    into[key] = sample
                elif sample.name.endswith(_CREATED):
                    into[key] = old._replace(value=min(old.value, sample.value))
                else:
                    into[key] = old._replace(value=old.value + sample.value)
    rendered = []
    for name, family in families.items():
        out = Metric(family.name, family.documentation, family.type, family.unit)
        out.samples = list(samples[name].values())
        rendered.append(out)
    return generate_latest(_Families(rendered))


@dataclass(frozen=True, slots=True)
class Reading:
    """One other process at a scrape: its ``index`` (1 and up), ``pid``, and ``text``, its
    exposition, or None when it did not answer (busy past the bound, stopped, restarting);
    ``name``: how the logs name it (``worker-1``), for the problems ``KeptCounts`` returns."""

    index: int
    pid: int
    text: bytes | None
    name: str


class KeptCounts:
    """The other processes' counts as the scrapes saw them, so that a sum never steps back.

    Prometheus reads a counter that goes down as a reset to zero, and ``increase`` then adds
    what was there again: a process left out of one scrape, or started again from zero, would
    make every rate of the sum jump. So a process that does not answer counts with what it
    said last, and when a process is replaced (another pid at its index) what its predecessor
    said last stays in the sum for good. What a process counted after its last scrape and
    before it died is lost: the sum is short by that, never over."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[int, list[Metric]]] = {}
        self._ended: list[Metric] = []

    def update(self, readings: Iterable[Reading]) -> tuple[int, list[str]]:
        """Take a scrape's ``readings``. Returns how many answered with a text that parsed,
        and a problem (``parsed``'s) for each that did not: those count as not answering."""
        answered, problems = 0, []
        for reading in readings:
            last = self._last.get(reading.index)
            if last is not None and last[0] != reading.pid:
                self._ended = parsed(merged(CollectorRegistry(), [self._ended, last[1]]))
                del self._last[reading.index]
            if reading.text is None:
                continue
            try:
                families = parsed(reading.text)
            except ValueError as exc:
                problems.append(f"{reading.name}: {exc}")
                continue
            self._last[reading.index] = (reading.pid, families)
            answered += 1
        return answered, problems

    def families(self) -> list[list[Metric]]:
        """The counts to add, one list of families a process (``merged``'s ``others``)."""
        kept = [families for _, families in self._last.values()]
        return [self._ended, *kept] if self._ended else kept
