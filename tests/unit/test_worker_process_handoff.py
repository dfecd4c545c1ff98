"""A worker process's start (receiver/processes/handoff.py) and the stop's bound with worker
processes (receiver/stop_budget.py)."""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.assembly import Endpoints
from receiver.config.sources import load_settings
from receiver.processes.handoff import (
    Handoff,
    HandoffError,
    encoded,
    read_handoff,
    read_rules,
    rules_path,
    write_rules,
)
from receiver.rules.loader import MAX_FILE_BYTES
from receiver.stop_budget import stop_budget

ROOT = Path(__file__).resolve().parents[2]


def _handoff() -> Handoff:
    settings = load_settings(
        None,
        {
            "REMEDIATOR_DATABASE_URL": "postgresql://remediator:s3cret@db.example:5432/r",
            "REMEDIATOR_REDIS_URL": "redis://:hunter2@redis.example:6379/0",
            "REMEDIATOR_WORKER_PROCESSES": "3",
            "REMEDIATOR_WORKER_SHUTDOWN_GRACE": "7s",
        },
    )
    return Handoff(
        settings,
        Endpoints("postgresql://remediator:s3cret@db.example:5432/r", None),
        2,
        Path("/run/remediator/worker-2.sock"),
        {"/etc/remediator/rules/a.yaml": "rules: []  # as serve runs them\n"},
    )


def test_a_handoff_reads_back_as_written_secrets_and_all() -> None:
    handoff = _handoff()
    back = read_handoff(io.BytesIO(encoded(handoff)))
    assert back == handoff
    assert back.settings.database_url is not None
    assert back.settings.database_url.get_secret_value().endswith("s3cret@db.example:5432/r")
    assert back.settings.worker_shutdown_grace_seconds == 7
    assert back.settings.worker_processes == 3
    assert back.rule_files == {"/etc/remediator/rules/a.yaml": "rules: []  # as serve runs them\n"}


def test_a_handoff_carries_rule_files_at_the_loader_s_bound_each() -> None:
    # Five files of MAX_FILE_BYTES: more than the 16 MiB a handoff was once bounded by.
    files = {f"/rules/{i}.yaml": "#" * MAX_FILE_BYTES for i in range(5)}
    handoff = dataclasses.replace(_handoff(), rule_files=files)
    assert read_handoff(io.BytesIO(encoded(handoff))).rule_files == files


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "standard input ended before a handoff"),
        (b"\x00\x00", "standard input ended before a handoff"),
        (struct.pack(">I", 100) + b"short", "standard input ended before a handoff"),
        (struct.pack(">I", 1 << 30), "not one `serve` wrote"),
        (struct.pack(">I", 5) + b"hello", "unreadable handoff"),
        (
            struct.pack(">I", len(pickle.dumps({"a": 1}))) + pickle.dumps({"a": 1}),
            "a handoff of type dict",
        ),
    ],
)
def test_anything_else_on_standard_input_is_refused_by_name(data: bytes, says: str) -> None:
    with pytest.raises(HandoffError, match=says):
        read_handoff(io.BytesIO(data))


def test_a_worker_process_started_by_hand_says_how_it_is_started_and_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "receiver.processes.child"],
        input=b"",
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"started by `remediator serve` (worker.processes)" in done.stderr


def test_worker_processes_add_their_own_close_to_the_stop() -> None:
    one = stop_budget(load_settings(None, {}))
    two = stop_budget(load_settings(None, {"REMEDIATOR_WORKER_PROCESSES": "2"}))
    assert one.processes_s == 0
    assert one.total_s == 63  # README, Operations: the stop takes at most 63 s by default
    # Each worker process stops its worker (as serve's), then closes its stores and its loop.
    assert two.processes_s == two.worker_s + two.close_s + two.leftovers_s
    assert two.total_s == 71  # README, "Worker processes"


def test_a_worker_process_is_not_handed_the_http_side_s_credentials() -> None:
    from receiver.processes.supervisor import WorkerProcesses

    settings = load_settings(
        None,
        {
            "REMEDIATOR_WEBHOOK_TOKEN": "webhook-secret",
            "REMEDIATOR_OPERATOR_TOKEN": "operator-secret",
            "REMEDIATOR_DATABASE_URL": "postgresql://remediator:s3cret@db.example:5432/r",
        },
    )
    processes = WorkerProcesses(
        0, settings, Endpoints("postgresql://db/r", None), rule_files=dict, log=None
    )
    handed = processes.handoff(1).settings
    assert (handed.webhook_token, handed.operator_token, handed.operator_tokens) == (None, None, {})
    assert handed.database_url == settings.database_url
    assert settings.webhook_token is not None  # serve's own are untouched
    assert b"webhook-secret" not in encoded(processes.handoff(1))
    assert b"operator-secret" not in encoded(processes.handoff(1))


def test_the_rules_serve_reloaded_read_back_as_written_and_none_before_a_reload(
    tmp_path: Path,
) -> None:
    path = rules_path(tmp_path / "worker-1.sock")
    assert path.parent == tmp_path
    assert read_rules(path) is None  # no reload yet: the process reads the directory
    texts = {"/rules/a.yaml": "rules: []\n", "/rules/b.yaml": "rules: []  # b\n"}
    write_rules(path, texts)
    write_rules(path, {"/rules/a.yaml": "rules: []\n"})  # replaced whole
    assert read_rules(path) == {"/rules/a.yaml": "rules: []\n"}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing partial left


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "unreadable rules from serve"),
        (b"\xff\xfe", "unreadable rules from serve"),
        (b'["a list"]', "not rule texts by path"),
        (b'{"/rules/a.yaml": 3}', "not rule texts by path"),
    ],
)
def test_rules_not_written_by_serve_are_refused_by_name(
    tmp_path: Path, body: bytes, says: str
) -> None:
    path = rules_path(tmp_path / "worker-1.sock")
    path.write_bytes(body)
    with pytest.raises(HandoffError, match=says):
        read_rules(path)
