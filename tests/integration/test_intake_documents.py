"""Intake sends a batch to PostgreSQL as JSON (``EventQueue.insert_event_groups``): every field
comes back as it was sent, whatever its text, and a batch of any size is stored in one go.

A jsonb value holds at most 255 MB, where the text arrays intake sent before held 1 GB: a batch
(or one notification: its groupKey is kept on each of its alerts) past that must still be stored
as one group commit, not refused (500) nor written one notification at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import Iterator
from io import StringIO
from types import MappingProxyType
from typing import Any

import asyncpg
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.alertmanager import Notification, parse_notification
from receiver.intake import Intake, IntakeResult
from receiver.model import Status
from receiver.store import NewEvent, Store
from receiver.store import events as store_events
from tests.support.payloads import alert, notification_body

pytestmark = pytest.mark.postgres

# -- every field, as sent -------------------------------------------------------------------

# Text JSON escapes, or that PostgreSQL's JSON parser would read as an escape, and other odd
# characters: everything but U+0000 and lone surrogates, which parsing replaces.
ODD = [
    "\\", '"', "\\u0041", "\\u0000", "\\ud800", "\\\\u0041", "\\n", "/", "\b", "\f", "\r\n",
    "\x7f", "\u2028", "\u2029", "\ufeff", "\ufffd", "\uffff", "\U0001f600", "\U0010ffff", "é",
    "{}", "[]", "null", "'", ".", "\x1b",
    *(chr(c) for c in range(1, 32)),
]  # fmt: skip
CHAR = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
TEXT = st.lists(st.one_of(CHAR, st.sampled_from(ODD)), max_size=12).map("".join)
LONG = st.builds(lambda piece, n: (piece or "x") * n, TEXT, st.integers(1000, 20_000))
ANY_TEXT = st.one_of(TEXT, TEXT, TEXT, LONG)
# Label names: Alertmanager's are Prometheus names, but what it sends is stored whatever it is.
NAMES = st.one_of(st.sampled_from(["alertname", "a.b", "ünïcode", "", "__name__"]), TEXT)
LABELS = st.dictionaries(NAMES, ANY_TEXT, max_size=5)

_fingerprints = itertools.count(1)


@st.composite
def _event(draw: st.DrawFn, group_key: str, receiver: str) -> NewEvent:
    factory = MappingProxyType if draw(st.booleans()) else dict
    return NewEvent(
        fingerprint=f"{next(_fingerprints):016x}",
        starts_at=draw(TEXT),
        status=draw(st.sampled_from([Status.FIRING, Status.RESOLVED])),
        labels=factory(draw(LABELS)),
        annotations=factory(draw(LABELS)),
        ends_at=draw(TEXT),
        generator_url=draw(ANY_TEXT),
        group_key=group_key,
        receiver=receiver,
        settled_reason=draw(st.none() | ANY_TEXT),
    )


@st.composite
def _group(draw: st.DrawFn) -> list[NewEvent]:
    group_key, receiver = draw(ANY_TEXT), draw(TEXT)
    return draw(st.lists(_event(group_key, receiver), min_size=1, max_size=3))


class _Loop:
    """A store on a loop of the test's own: hypothesis drives a test that is not async."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.store: Store = self.run(Store.connect(database_url, min_size=1, max_size=2))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.close()


@pytest.fixture
def own_loop(database_url: str) -> Iterator[_Loop]:
    created = _Loop(database_url)
    try:
        yield created
    finally:
        created.close()


_ROW = """SELECT fingerprint, starts_at, status, ends_at, labels::text AS labels,
                 annotations::text AS annotations, generator_url, alertname, group_key, receiver,
                 settled_reason, state
          FROM alert_events WHERE fingerprint = ANY($1::text[])"""


def _as_sent(e: NewEvent) -> dict[str, Any]:
    return {
        "fingerprint": e.fingerprint,
        "starts_at": e.starts_at,
        "status": str(e.status),
        "ends_at": e.ends_at,
        "labels": dict(e.labels),
        "annotations": dict(e.annotations),
        "generator_url": e.generator_url,
        "alertname": e.labels.get("alertname", ""),
        "group_key": e.group_key,
        "receiver": e.receiver,
        "settled_reason": e.settled_reason,
        "state": "pending" if e.settled_reason is None else "done",
    }


def _as_stored(row: Any) -> dict[str, Any]:
    return {
        **dict(row),
        "labels": json.loads(row["labels"]),
        "annotations": json.loads(row["annotations"]),
    }


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(groups=st.lists(_group(), min_size=1, max_size=4))
def test_every_field_of_any_storable_text_comes_back_as_sent(
    own_loop: _Loop, groups: list[list[NewEvent]]
) -> None:
    results = own_loop.run(own_loop.store.insert_event_groups(groups))
    assert results == [(len(g), 0) for g in groups]
    sent = {e.fingerprint: _as_sent(e) for g in groups for e in g}
    rows = own_loop.run(own_loop.store._pool.fetch(_ROW, list(sent)))
    assert {r["fingerprint"]: _as_stored(r) for r in rows} == sent


def test_the_parser_and_the_store_agree_on_awkward_text(own_loop: _Loop) -> None:
    # Through the parser: the escapes Alertmanager's JSON carries, and what it makes of them.
    text = "".join(ODD) + "\\u0000 \\ud800 \x00"
    sent = alert({"alertname": text, text: text}, annotations={text: text}, generator_url=text)
    body = json.dumps(notification_body(sent, receiver=text, raw={"groupKey": text}))
    note = parse_notification(body.encode())
    result = own_loop.run(Intake(own_loop.store).accept(note))
    assert result == IntakeResult(1, 0)
    [row] = own_loop.run(own_loop.store._pool.fetch(_ROW, [sent["fingerprint"]]))
    parsed = note.alerts[0]
    stored = _as_stored(row)
    assert stored["labels"] == parsed.labels
    assert stored["annotations"] == parsed.annotations
    assert (stored["alertname"], stored["generator_url"]) == (
        parsed.labels["alertname"],
        parsed.generatorURL,
    )
    assert (stored["group_key"], stored["receiver"]) == (note.groupKey, note.receiver)
    assert "\x00" not in stored["group_key"]
    assert "\ufffd" in stored["group_key"]


# -- size -----------------------------------------------------------------------------------


def _rendering_logger() -> tuple[structlog.typing.FilteringBoundLogger, StringIO]:
    out = StringIO()
    return structlog.wrap_logger(structlog.PrintLogger(out)), out


async def test_a_long_group_key_on_many_alerts_is_stored(store: Store) -> None:
    # A body of 1.1 MB (well under the 16 MiB default limit) whose groupKey, kept on each of
    # its 300 alerts, makes 300 MB: more than one jsonb value holds.
    alerts = [
        alert({"alertname": "Wide", "pod": f"p{i}"}, starts_at="2026-11-30T02:00:00Z")
        for i in range(300)
    ]
    body = notification_body(*alerts, raw={"groupKey": "k" * (1 << 20)})
    note = Notification.model_validate(body)
    assert await Intake(store, timeout_s=60).accept(note) == IntakeResult(300, 0)
    stored = await store._pool.fetchval(
        "SELECT count(*) FROM alert_events WHERE length(group_key) = $1", 1 << 20
    )
    assert stored == 300


async def test_a_batch_larger_than_one_jsonb_is_one_group_commit(store: Store) -> None:
    # Twenty notifications of 14 MiB each, all under the default body limit, arrive at once:
    # 280 MiB in one batch. Stored together, not failed and then written one at a time.
    log, out = _rendering_logger()
    intake = Intake(store, timeout_s=120, log=log)
    big = {"v": "y" * (14 << 20)}
    notes = []
    for n in range(20):
        labels = {"alertname": "Big", "pod": f"p{n}"}
        # The fingerprint of the labels without the long one: computing it in Python over
        # 14 MiB takes seconds, and intake takes it as sent.
        sent = alert(labels, starts_at="2026-11-30T02:00:00Z", raw={"labels": labels | big})
        notes.append(Notification.model_validate(notification_body(sent)))
    outcomes = await asyncio.gather(*(intake.accept(n) for n in notes))
    assert outcomes == [IntakeResult(1, 0)] * 20
    assert out.getvalue() == ""
    assert await store._pool.fetchval("SELECT count(*) FROM alert_events") == 20


def _events(prefix: int, n: int, group_key: str = "g") -> list[NewEvent]:
    return [
        NewEvent(
            fingerprint=f"{prefix:08x}{i:08x}",
            starts_at="2026-11-30T02:00:00Z",
            status=Status.FIRING,
            labels={"alertname": "Split", "i": str(i)},
            group_key=group_key,
            receiver="r",
        )
        for i in range(n)
    ]


async def test_a_batch_written_in_parts_counts_duplicates_as_one_statement_does(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Documents of at most 600 characters: each notification below is split between several.
    monkeypatch.setattr(store_events, "_DOCUMENT_CHARS", 600)
    first, second = _events(1, 12), _events(2, 12, group_key="h")
    again = [*first[3:5], *_events(3, 2)]  # two copies of the first group's, two new
    mixed = [*_events(4, 3, group_key="x"), *_events(5, 3, group_key="y")]
    results = await store.insert_event_groups([first, second, again, first[:1], mixed])
    assert results == [(12, 0), (12, 0), (2, 2), (0, 1), (6, 0)]
    rows = await store._pool.fetch("SELECT fingerprint, group_key FROM alert_events")
    assert len(rows) == 12 + 12 + 2 + 6
    by_fingerprint = {r["fingerprint"]: r["group_key"] for r in rows}
    assert {by_fingerprint[e.fingerprint] for e in second} == {"h"}
    assert [by_fingerprint[e.fingerprint] for e in mixed] == ["x"] * 3 + ["y"] * 3
    # A failure in a later part leaves nothing of the earlier ones: one transaction.
    poisoned = _events(6, 12)
    poisoned[-1] = dataclasses.replace(poisoned[-1], labels={"alertname": "Split", "x": "\x00"})
    with pytest.raises(asyncpg.PostgresError):
        await store.insert_event_groups([poisoned])
    assert await store._pool.fetchval("SELECT count(*) FROM alert_events") == 12 + 12 + 2 + 6
