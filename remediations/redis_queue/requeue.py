"""``redis.requeue_dead_letters``: put up to N dead letters back on their work queue, atomically.

Every move is one Lua script (``lua/``): Redis runs it with nothing interleaved, so consumers
popping the work queue meanwhile see each message exactly once, in one place or the other:
nothing is lost or duplicated by the move. ``preview()`` binds what stays true while the
queue moves (the queue, its layout and keys, the cap), never a count: an approval is for "at
most N of this queue" and must survive the queue growing meanwhile. Dry-run counts what would
move and moves nothing. Reads are retried on connection errors; the moving script is sent once
(a lost answer may mean it ran, and sending it again could move past the cap), and its failure
says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any, ClassVar, TypeVar

import redis.exceptions
from pydantic import BaseModel, Field

from remediations.base import (
    ActionContext,
    ActionError,
    ActionRefused,
    Change,
    Outcome,
    ParamsError,
    Result,
    Risk,
    TransientActionError,
)
from remediations.durations import format_duration
from remediations.params import Duration, Integer, StrictParams
from remediations.redis_queue.celery_move import move_celery
from remediations.redis_queue.declines import DECLINED, NOT_RUN, PASSING, cluster_refusal, declined
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues, text
from remediations.redis_queue.rq_skips import skipped_detail
from remediations.redis_queue.stream_count import stream_would_move
from remediations.retrying import (
    DEFAULT_RETRY,
    RetryPolicy,
    call_with_retries,
    describe_exception,
)
from remediations.targets import Target
from remediations.tls import tls_words

__all__ = ["CONSUMER", "MAX_SCAN_CALLS", "SCAN_BUDGET", "RequeueDeadLetters", "RequeueParams"]

# The consumer name that claims idle stream entries for the instant it takes to re-add them.
CONSUMER = "alert-remediator"

# A stream's move examines at most this many pending entries per script call, so that no call
# blocks Redis for long (about 5 µs an entry on Redis 7: some 100 ms), and makes at most
# MAX_SCAN_CALLS calls a step (about 2,000,000 entries), other clients served in between.
SCAN_BUDGET = 20_000
MAX_SCAN_CALLS = 100

T = TypeVar("T")
_TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _lua(name: str) -> str:
    return resources.files("remediations.redis_queue").joinpath("lua", name).read_text("utf-8")


def _rq_lua(name: str) -> str:
    """An RQ script with ``rq_job.lua`` (why a job is not moved) before it: the dry run's count
    and the move read each job by the same function."""
    return _lua("rq_job.lua") + _lua(name)


class RequeueParams(StrictParams):
    """``max_messages``: the cap per run. ``min_idle`` (streams only): how long an entry must
    have waited for its acknowledgement before it is taken from its consumer."""

    max_messages: Integer = Field(default=100, ge=1, le=10_000)
    min_idle: Duration = Field(default=300.0, ge=1)


class RequeueDeadLetters:
    """Move dead letters back to the work queue of a configured queue (target: RedisQueue)."""

    name: ClassVar[str] = "redis.requeue_dead_letters"
    Params: ClassVar[type[BaseModel]] = RequeueParams
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = False
    target_kinds: ClassVar[frozenset[str]] = frozenset({"RedisQueue"})
    # A second move of the same step would requeue up to the cap again: a step taken up
    # after a crash that may have come after the move is not run again (Action.replay_safe).
    replay_safe: ClassVar[bool] = False

    def __init__(
        self, retry: RetryPolicy = DEFAULT_RETRY, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.retry = retry
        self._clock = clock or (lambda: datetime.now(UTC))
        self._scripts = {
            Layout.LIST: _lua("requeue_list.lua"),
            Layout.CELERY: _lua("requeue_celery.lua"),
            Layout.RQ: _rq_lua("requeue_rq.lua"),
            Layout.STREAM: _lua("reclaim_stream.lua"),
        }
        self._rq_count = _rq_lua("count_rq.lua")

    def requires(self, target: Target) -> frozenset[str]:
        """``redis:<connection>`` of the ``<connection>/<queue>`` target."""
        return frozenset({f"redis:{target.name.partition('/')[0]}"})

    def describe(self, target: Target, params: BaseModel) -> str:
        typed = self._params(params)
        return (
            f"requeue at most {typed.max_messages} dead letter(s) of Redis queue {target.name} "
            f"(stream entries idle for more than {format_duration(typed.min_idle)})"
        )

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        """What an approver approves: at most ``max_messages`` messages of this queue, from and
        to these keys, back to work. The counts are read (a layout that does not match Redis,
        e.g. NOGROUP or WRONGTYPE, is refused here, so nobody is asked to approve it) but not
        put in the change: an approved step runs only while a fresh preview hashes the same,
        and in an incident the dead-letter queue gains or loses messages every second, so a
        count in the plan would supersede every approval before it could run. ``Change`` has
        no place for unbound information, so the live count is left out of the approval (the
        alert that asked, with its labels and annotations, is in the approval's context); dry
        runs and the step's result report the counts.
        The cap, the layout and its keys are bound: another cap or a reconfigured queue is a
        different change and asks again."""
        typed = self._params(params)
        queues, _queue, spec = self._resolve(ctx, target)
        await self._read(queues, "count", lambda: self._counts(queues, spec, typed))
        return Change(
            f"requeue at most {typed.max_messages} {self._what(spec, typed)} of {target.name} "
            f"({spec.describe()})",
            {},
            {"moved": f"at most {typed.max_messages}"},
            preconditions=self._bound(spec, typed),
        )

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        """Move at most ``max_messages``; ``OK`` with the counts before and after and how many
        moved, ``NOOP`` when none did. Approved (``ctx.approved``), it refuses unless the queue
        is configured as approved, with the approved cap. Dry run: counts, moves nothing."""
        typed = self._params(params)
        queues, _queue, spec = self._resolve(ctx, target)
        if ctx.approved is not None and dict(ctx.approved) != self._bound(spec, typed):
            raise ActionRefused(
                f"{target.name}: the queue or the cap is not what was approved "
                f"(approved {dict(ctx.approved)}, now {self._bound(spec, typed)})"
            )
        counts = await self._read(queues, "count", lambda: self._counts(queues, spec, typed))
        before = {k: v for k, v in counts.items() if k != "waiting"}
        if ctx.dry_run:
            waiting, detail = counts["waiting"], ""
            if spec.layout is Layout.RQ:
                waiting, detail = await self._read(
                    queues, "count", lambda: self._rq_would_move(queues, spec, typed)
                )
            elif spec.layout is Layout.STREAM:
                waiting, detail = await self._read(
                    queues, "count", lambda: stream_would_move(queues.client, spec, typed)
                )
            would = min(typed.max_messages, waiting)
            more = "+" if waiting > would else ""
            return Result(
                Outcome.DRY_RUN,
                f"dry run (nothing moved): requeue {would} of {waiting}{more} "
                f"{self._what(spec, typed)} of {target.name} ({spec.describe()}){detail}",
                before,
            )
        try:
            moved, after, detail = await self._move(queues, spec, typed)
        except DECLINED as exc:
            raise declined(exc, f"Redis {queues.name!r}: the move on {target.name}") from exc
        except _TRANSIENT as exc:
            raise TransientActionError(
                f"Redis {queues.name!r}: the connection failed while moving messages of "
                f"{target.name} ({type(exc).__name__}: {exc}); how many moved is unknown, "
                "count the keys"
            ) from exc
        except NOT_RUN as exc:
            raise cluster_refusal(exc, f"Redis {queues.name!r}: the move on {target.name}") from exc
        except redis.exceptions.ResponseError as exc:
            # A script's error does not undo the writes it made before it: some messages may
            # have moved (the step is recorded failed, may have acted).
            raise ActionRefused(
                f"Redis refused the move on {target.name}: {exc}; some messages may have "
                "moved before it, count the keys",
                may_have_acted=True,
            ) from exc
        if moved == 0:
            return Result(
                Outcome.NOOP, f"nothing to requeue on {target.name}{detail}", before, after
            )
        return Result(
            Outcome.OK,
            f"requeued {moved} message(s) on {target.name} ({spec.describe()}){detail}",
            before,
            {**after, "moved": moved},
        )

    @staticmethod
    def _what(spec: QueueSpec, params: RequeueParams) -> str:
        if spec.layout is Layout.STREAM:
            return f"pending entries idle for more than {format_duration(params.min_idle)}"
        return "dead letters"

    @staticmethod
    def _bound(spec: QueueSpec, params: RequeueParams) -> dict[str, Any]:
        """What stays true while the queue moves, and so what an approval binds: the cap and
        where messages are taken from and put (the layout and its keys)."""
        where: dict[str, Any] = {"layout": spec.layout.value, "key": spec.key}
        if spec.layout is Layout.STREAM:
            where |= {"group": spec.group, "min_idle_s": params.min_idle}
        else:
            where["dead_letter_key"] = spec.dead_letter_key
        if spec.layout is Layout.LIST:
            where |= {"pop": spec.pop.value, "push": spec.push.value}
        if spec.layout is Layout.RQ:
            where["job_key_prefix"] = spec.job_key_prefix
        return {**where, "max_messages": params.max_messages}

    async def _counts(
        self, queues: RedisQueues, spec: QueueSpec, params: RequeueParams
    ) -> dict[str, int]:
        r = queues.client
        if spec.layout is Layout.STREAM:
            idle = await r.xpending_range(
                spec.key,
                spec.group,
                min="-",
                max="+",
                # One past the cap: enough for a dry run to say more wait than it would move
                # ("3 of 4+"), and bounded, as the idle entries are listed, not counted.
                count=params.max_messages + 1,
                idle=round(params.min_idle * 1000),
            )
            pending = (await r.xpending(spec.key, spec.group))["pending"]
            return {
                "waiting": len(idle),
                "pending": int(pending),
                "stream": int(await r.xlen(spec.key)),
            }
        if spec.layout is Layout.RQ:
            # As rq's count, which runs its cleanup first: expired ids do not count (read
            # only; the move drops them).
            expired = int(await r.zcount(spec.dead_letter_key, 0, self._rq_now()))
            failed = int(await r.zcard(spec.dead_letter_key)) - expired
            return {"waiting": failed, "dead_letters": failed, "queue": int(await r.llen(spec.key))}
        dead = int(await r.llen(spec.dead_letter_key))
        return {"waiting": dead, "dead_letters": dead, "queue": int(await r.llen(spec.key))}

    async def _rq_would_move(
        self, queues: RedisQueues, spec: QueueSpec, params: RequeueParams
    ) -> tuple[int, str]:
        """What a live RQ move would move now (``lua/count_rq.lua``, read only): how many of
        the failed jobs, up to one past the cap, and the words for the ids it would skip. Not
        the registry's count: an id whose job hash is gone, whose origin is another queue, or
        a rate-limited job is counted there and skipped by the move, so a dry run of 150 such
        ids before 2 jobs said it would requeue 10."""
        reply = await queues.client.eval(
            self._rq_count,
            1,
            spec.dead_letter_key,
            params.max_messages + 1,
            spec.job_key_prefix,
            self._rq_now(),
            spec.rq_queue,
        )
        would, gone, elsewhere, limited = (int(x) for x in reply)
        return would, skipped_detail(gone, elsewhere, limited, spec, dry=True)

    async def _move(
        self, queues: RedisQueues, spec: QueueSpec, params: RequeueParams
    ) -> tuple[int, Mapping[str, Any], str]:
        r = queues.client
        script = self._scripts[spec.layout]
        if spec.layout is Layout.STREAM:
            return await self._reclaim(queues, spec, params)
        if spec.layout is Layout.RQ:
            stamp = self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            reply = await r.eval(
                script,
                3,
                spec.dead_letter_key,
                spec.key,
                spec.rq_queues_key,
                params.max_messages,
                spec.job_key_prefix,
                stamp,
                self._rq_now(),
                spec.rq_queue,
            )
            moved, gone, elsewhere, limited, expired, failed, length = (int(x) for x in reply[:7])
            detail = (
                f"; {expired} expired failed id(s) removed, as RQ's cleanup does" if expired else ""
            ) + skipped_detail(gone, elsewhere, limited, spec, dry=False)
            jobs = [text(x) for x in reply[7:]]
            return moved, {"dead_letters": failed, "queue": length, "jobs": jobs}, detail
        if spec.layout is Layout.CELERY:
            return await move_celery(r, script, spec, params.max_messages)
        source, dest = spec.ends
        reply = await r.eval(
            script, 2, spec.dead_letter_key, spec.key, params.max_messages, source.value, dest.value
        )
        moved, dead, length = (int(x) for x in reply)
        return moved, {"dead_letters": dead, "queue": length}, ""

    async def _reclaim(
        self, queues: RedisQueues, spec: QueueSpec, params: RequeueParams
    ) -> tuple[int, Mapping[str, Any], str]:
        """A stream's move: the script called from the group's first pending entry on, each
        call examining at most ``SCAN_BUDGET`` entries (it blocks Redis while it runs), until
        the cap is met, every pending entry was examined, or ``MAX_SCAN_CALLS`` calls were
        made. A failure after a call that re-added entries is an ActionError that may have
        acted, naming how many were."""
        cursor, readded, gone, pending = "0-0", 0, 0, 0
        moves: list[dict[str, str]] = []
        for _ in range(MAX_SCAN_CALLS):
            try:
                reply = await queues.client.eval(
                    self._scripts[Layout.STREAM],
                    1,
                    spec.key,
                    spec.group,
                    CONSUMER,
                    round(params.min_idle * 1000),
                    params.max_messages - readded,
                    cursor,
                    SCAN_BUDGET,
                )
            except Exception as exc:
                if not readded and not gone:
                    raise  # nothing moved yet: run() says what the error means
                raise ActionError(
                    f"Redis {queues.name!r}: the move on {spec.key} failed after {readded} "
                    f"entr(y/ies) were re-added ({type(exc).__name__}: {exc}); count the "
                    "stream and its group's pending entries",
                    may_have_acted=True,
                ) from exc
            added, lost, pending = (int(x) for x in reply[:3])
            readded, gone, cursor = readded + added, gone + lost, text(reply[3])
            ids = [text(x) for x in reply[4:]]
            moves += [{"from": ids[i], "to": ids[i + 1]} for i in range(0, len(ids), 2)]
            if readded >= params.max_messages or cursor == "0-0":
                break
        detail = f"; {gone} pending entr(y/ies) were deleted from the stream" if gone else ""
        if readded < params.max_messages and cursor != "0-0":
            detail += (
                f"; stopped after examining about {MAX_SCAN_CALLS * SCAN_BUDGET:,} pending "
                "entries, the rest not examined: run the step again for them"
            )
        return readded, {"pending": pending, "readded": moves}, detail

    def _rq_now(self) -> int:
        """Now as rq's ``current_timestamp()``: whole seconds since the epoch, UTC (a failed
        registry entry's score is when it expires, on that scale)."""
        return int(self._clock().timestamp())

    async def _read(self, queues: RedisQueues, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call_with_retries(
                fn,
                what=f"Redis {queues.name!r}: {what}",
                attempts=self.retry.attempts,
                wait=self.retry.backoff(),
                transient=lambda exc: isinstance(exc, _TRANSIENT + PASSING),
                # redis-py's text of a refused certificate gives no hint of the fix.
                describe=lambda exc: (
                    tls_words(exc, f"the URL's ssl_ca_certs (redis.queues.{queues.name}.url_file)")
                    or describe_exception(exc)
                ),
                may_have_acted=False,  # counts only: the move is _move's
            )
        except NOT_RUN as exc:
            raise cluster_refusal(exc, f"Redis {queues.name!r}: {what}") from exc
        except redis.exceptions.ResponseError as exc:
            # e.g. NOGROUP, WRONGTYPE: the configuration does not match what is in Redis.
            raise ActionRefused(f"Redis {queues.name!r}: {what}: {exc}") from exc

    def _resolve(self, ctx: ActionContext, target: Target) -> tuple[RedisQueues, str, QueueSpec]:
        if target.kind not in self.target_kinds:
            raise ActionRefused(f"{self.name} acts on RedisQueue, not {target.kind}")
        connection, _, queue = target.name.partition("/")
        queues: RedisQueues = ctx.clients.get(f"redis:{connection}")
        return queues, queue, queues.spec(queue)

    def _params(self, params: BaseModel) -> RequeueParams:
        if not isinstance(params, RequeueParams):
            raise ParamsError(self.name, f"expected RequeueParams, got {type(params)}")
        return params
