"""A worker process: the worker of ``remediator serve`` and nothing else, started by ``serve``
(``worker.processes``) with ``python -m receiver.processes.child`` and its ``Handoff`` on
standard input.

It claims and works events and jobs exactly as the worker in ``serve``'s own process does (the
same ``receiver.assembly``), so every guarantee between replicas holds between processes: one
run per episode, leases and fences, the guards' admissions made once. It takes no webhooks and
serves no pages: its metrics are read by ``serve`` over a Unix socket of its own and added into
``serve``'s ``/metrics``.

It stops as ``serve`` does (``receiver.stop_budget``): on SIGTERM or SIGINT, or when its
standard input ends (the process that started it is gone, killed or crashed), it claims
nothing more, lets the steps in progress finish within ``worker.shutdown_grace`` and hands
back the rest.

It starts on the rules ``serve`` runs on, their texts handed to it, not on the rule files as
they are now: when those have errors since (``serve`` runs on its last good rules), a worker
process started again after a crash starts on the same last good rules, rather than not at
all. On SIGHUP it reloads the rules ``serve`` wrote for it (``handoff.rules_path``: ``serve``
sends it after each reload of its own, which is the one recorded in the audit log), or the
directory's when ``serve`` wrote none; a failed reload keeps the rules it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only what is light at the top: what takes a second to import is imported by the functions
# that use it, after SIGHUP is noted (the module's end).
if TYPE_CHECKING:
    from aiohttp import web

    from receiver.assembly import WorkerSide
    from receiver.processes.handoff import Handoff
    from receiver.rules.errors import RuleError

__all__ = ["main", "run_child"]

# Exit status of a child that cannot start, for the supervisor's log: 2 a bad handoff, 3 a
# start that failed (the store, Redis or the rules).
_BAD_HANDOFF = 2
_NOT_STARTED = 3


async def run_child(handoff: Handoff, log: Any) -> None:
    """Run the worker of ``handoff`` until a stop (above), logging on ``log`` (structlog's;
    ``main`` has every line name the process), on the rules handed to it. Raises what
    ``assemble`` raises when the stores cannot be reached, and what ``load_rules`` raises when
    the rules do not load."""
    from receiver.assembly import assemble, load_rules
    from receiver.processes.handoff import HandoffError, read_rules, rules_path
    from receiver.stop_budget import close_all, stop_budget, within

    settings = handoff.settings
    rules = load_rules(settings, log, warn=False, files=handoff.rule_files)
    side = await assemble(settings, handoff.endpoints, rules, log=log, started_by_serve=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def begin_stop() -> None:
        side.pipeline.wind_down()
        side.worker.stop_claiming()
        stop.set()

    def reload() -> None:
        # serve's rules as of its latest reload; none written yet (a SIGHUP by hand): the
        # directory's.
        try:
            texts = read_rules(rules_path(handoff.metrics_socket))
        except HandoffError as exc:
            log.error("rule reload failed; keeping the last good rules", error=str(exc))
            return
        _reported(rules.holder.reload(texts), log)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, begin_stop)
    loop.add_signal_handler(signal.SIGHUP, reload)
    if _EARLY_RELOADS:  # asked for before this handler was there (the module's end)
        reload()
    parent_gone = _on_parent_gone(loop, begin_stop)
    metrics = await _serve_metrics(side, handoff)
    try:
        if not stop.is_set():  # a stop before this point: claim nothing at all (start clears it)
            await side.worker.start()
            log.info("worker process started", worker=side.worker.owner, pid=os.getpid())
        await stop.wait()
        log.info("worker process stopping: finishing or releasing claimed work")
    finally:
        begin_stop()
        # SIGINT and SIGTERM keep their handler until the process exits: serve may send SIGTERM
        # again (and Ctrl-C reaches every process of the terminal's group), and the default
        # action would kill the process while it hands its claims back.
        loop.remove_signal_handler(signal.SIGHUP)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(sys.stdin.fileno())
        grace_s = settings.worker_shutdown_grace_seconds
        await within(
            side.worker.stop(grace_s), stop_budget(settings).worker_s, log, "stopping the worker"
        )
        await metrics.cleanup()
        _remove_socket(handoff.metrics_socket, serve_gone=parent_gone.is_set())
        await close_all(side.store, side.redis, side.clients, side.kube, log)
        log.info("worker process stopped", worker=side.worker.owner)


def _reported(errors: list[RuleError], log: Any) -> None:
    # serve's own reload writes the audit row; this process only says what it loaded.
    if errors:
        for error in errors:
            log.error("rule reload failed; keeping the last good rules", error=str(error))
    else:
        log.info("rules reloaded")


def _remove_socket(socket: Path, *, serve_gone: bool) -> None:
    """Remove this process's metrics socket; when serve is gone (killed: its own cleanup never
    runs), its directory too, by the last worker process to leave it (others' sockets are in
    it until then). With serve alive the directory is serve's to remove: a worker process it
    starts again binds its socket in it."""
    with contextlib.suppress(OSError):
        socket.unlink()
    if serve_gone:
        from receiver.processes.handoff import rules_path

        with contextlib.suppress(OSError):
            rules_path(socket).unlink(missing_ok=True)  # no reload comes any more
        with contextlib.suppress(OSError):
            socket.parent.rmdir()


def _on_parent_gone(loop: asyncio.AbstractEventLoop, begin_stop: Any) -> asyncio.Event:
    """Stop when standard input ends: serve holds the pipe's other end until it exits. The
    event returned is set then."""
    fd = sys.stdin.fileno()
    gone = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            gone.set()
            begin_stop()

    loop.add_reader(fd, readable)
    return gone


async def _serve_metrics(side: WorkerSide, handoff: Handoff) -> web.AppRunner:
    """Answer ``GET /metrics`` on the handoff's Unix socket with this process's metrics."""
    from aiohttp import web

    async def exposition(request: web.Request) -> web.Response:
        body, content_type = side.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.UnixSite(runner, str(handoff.metrics_socket)).start()
    return runner


def main() -> None:
    """Read the handoff, then run until stopped; exits 2 on a bad handoff, 3 when the start
    fails (said on standard error, which is serve's)."""
    import structlog

    from receiver.config import ConfigError
    from receiver.embedded import EmbeddedError
    from receiver.log_setup import configure_logging
    from receiver.processes.handoff import HandoffError, process_name, read_handoff
    from receiver.rules.errors import RuleSetError
    from receiver.runtime import event_loop_factory, run_bounded, tune_garbage_collector
    from receiver.startup import StartupError
    from receiver.stop_budget import LEFTOVERS_S

    try:
        handoff = read_handoff(sys.stdin.buffer)
    except HandoffError as exc:
        print(f"remediator worker process: {exc}", file=sys.stderr)
        sys.exit(_BAD_HANDOFF)
    name = process_name(handoff.index)
    # Every line names the process (the pipeline's and the worker's loggers are not this one).
    configure_logging(handoff.settings.log_level, handoff.settings.log_format.value, process=name)
    log = structlog.get_logger("remediator")
    tune_garbage_collector()
    try:
        run_bounded(
            run_child(handoff, log),
            leftovers_s=LEFTOVERS_S,
            log=log,
            loop_factory=event_loop_factory(),
        )
    except RuleSetError as exc:
        log.error("worker process not started: errors in the rule files", errors=len(exc.errors))
        sys.exit(_NOT_STARTED)
    except (StartupError, ConfigError, EmbeddedError) as exc:
        log.error("worker process not started", error=str(exc))
        sys.exit(_NOT_STARTED)
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass


# SIGHUP's default action ends a process. serve sends it to every worker process it started
# when its rules reload, and one that came while this process was still importing or starting
# (a second or more, before run_child's handler) ended it, to be started again after a pause.
# From here on, before anything heavy is imported, it is noted instead, and acted on once
# run_child's handler is in place: the rules are read again then.
_EARLY_RELOADS: list[int] = []

if __name__ == "__main__":
    signal.signal(signal.SIGHUP, lambda signum, _frame: _EARLY_RELOADS.append(signum))
    main()
