"""Metrics live in their own registry; logging renders one JSON object per line."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import structlog

from receiver.log_setup import configure_logging
from receiver.telemetry import Metrics


def test_two_metrics_objects_do_not_share_counters() -> None:
    a, b = Metrics(), Metrics()
    a.alert_received("firing", 3)
    a.duplicates(2)
    a.run_finished("restart-on-high-memory", "succeeded")
    a.guard_refused("cooldown")
    a.action_finished("kubernetes.rollout_restart", "ok", 0.2)
    a.http_request("/api/v1/alerts", "POST", 200, 0.01)
    a.set_queue_depth(7)
    text = a.render()[0].decode()
    assert 'remediator_alerts_received_total{status="firing"} 3.0' in text
    assert "remediator_alert_duplicates_total 2.0" in text
    assert 'remediator_runs_total{outcome="succeeded",rule="restart-on-high-memory"} 1.0' in text
    assert 'remediator_guard_refusals_total{guard="cooldown"} 1.0' in text
    assert (
        'remediator_action_duration_seconds_count{action="kubernetes.rollout_restart",outcome="ok"}'
        " 1.0" in text
    )
    assert "remediator_queue_depth 7.0" in text
    assert "remediator_alerts_received_total{" not in b.render()[0].decode()


def test_repeated_observations_accumulate_and_clients_cannot_mint_methods() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.http_request("/api/v1/alerts", "POST", 200, 0.01)
        metrics.run_finished("r", "succeeded")
    for method in ("BREW", "PROPFIND", "X" * 50):
        metrics.http_request("unmatched", method, 405, 0.001)
    text = metrics.render()[0].decode()
    assert (
        'remediator_http_requests_total{code="200",method="POST",route="/api/v1/alerts"} 3.0'
        in text
    )
    assert 'remediator_runs_total{outcome="succeeded",rule="r"} 3.0' in text
    assert 'remediator_http_requests_total{code="405",method="other",route="unmatched"} 3.0' in text
    assert "BREW" not in text


async def test_queue_depth_refreshed_on_scrape_and_failure_keeps_last_value() -> None:
    metrics = Metrics()
    depth = [5]

    async def read() -> int:
        if depth[0] < 0:
            raise ConnectionError("store down")
        return depth[0]

    metrics.track_queue_depth(read)
    await metrics.refresh()
    assert "remediator_queue_depth 5.0" in metrics.render()[0].decode()
    depth[0] = -1
    await metrics.refresh()
    assert "remediator_queue_depth 5.0" in metrics.render()[0].decode()


def test_json_logging_from_structlog_and_stdlib() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging("info", "json", stream=out)
        structlog.get_logger("test").bind(run_id="r1").info("step done", action="x")
        structlog.get_logger("test").debug("hidden")
        logging.getLogger("aiohttp.server").warning("stdlib %s", "too")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert lines[0]["event"] == "step done"
    assert lines[0]["run_id"] == "r1"
    assert lines[0]["level"] == "info"
    assert "timestamp" in lines[0]
    assert lines[1]["event"] == "stdlib too"
    assert lines[1]["level"] == "warning"
    assert len(lines) == 2


def test_a_named_process_names_every_line_whichever_logger_wrote_it() -> None:
    # A worker process of serve writes to serve's output: its pipeline's and the libraries'
    # lines, bound to nothing of it, read as serve's own without the name.
    out = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging("info", "json", stream=out, process="worker-3")
        structlog.get_logger("remediator.pipeline").info("admitted", run_id="r1")
        structlog.get_logger("remediator").bind(process="own").info("bound")
        logging.getLogger("asyncpg").warning("stdlib %s", "too")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert [(r["event"], r["process"]) for r in lines] == [
        ("admitted", "worker-3"),
        ("bound", "own"),
        ("stdlib too", "worker-3"),
    ]


def _fail_holding(secret: str) -> None:
    token = secret  # a local that a traceback with locals would print
    raise RuntimeError(f"bad request ({len(token)} bytes)")


def test_exception_logs_never_print_local_variables() -> None:
    secret = "s3cr3t-webhook-token-value"
    for fmt in ("json", "console"):
        stream = io.StringIO()
        configure_logging("info", fmt, stream=stream)
        try:
            _fail_holding(secret)
        except RuntimeError:
            structlog.get_logger("test").exception("request failed")
        output = stream.getvalue()
        assert "request failed" in output, fmt
        assert "RuntimeError" in output, fmt  # the traceback itself is still there
        assert secret not in output, f"{fmt} logs printed a local variable"
    configure_logging("info", "json")


async def test_a_scrape_reads_the_store_for_all_its_gauges_at_once() -> None:
    # One after another, three reads each bounded at 5 s made a scrape on a frozen store take
    # 17 s, past Prometheus's 10 s scrape timeout. Together, each waits for the others here:
    # a scrape that ran them in turn would never get past the first.
    metrics = Metrics()
    together = asyncio.Barrier(3)

    async def depth() -> int:
        await together.wait()
        return 4

    async def dead() -> dict[str, int]:
        await together.wait()
        return {"events": 1, "jobs": 0}

    async def approvals() -> tuple[int, float | None]:
        await together.wait()
        return 2, None

    metrics.track_queue_depth(depth)
    metrics.track_dead_letters(dead)
    metrics.track_approvals(approvals)
    await asyncio.wait_for(metrics.refresh(), timeout=10)
    text = metrics.render()[0].decode()
    assert "remediator_queue_depth 4.0" in text
    assert 'remediator_dead_letters{queue="events"} 1.0' in text
    assert "remediator_approvals_pending 2.0" in text
