"""The README's "Try an approval locally", followed as written: its shell blocks run by bash, in
order, against a real ``remediator serve`` on the embedded default, the README's own catcher
and curl, from a fresh directory.

What the test changes, and only that: the clone's ``.venv/bin`` is a directory whose
``remediator`` runs this checkout (``python -m receiver.cli``); the walkthrough's directory and
its two ports are fresh ones (someone else's serve or catcher may hold ``/tmp/try-approval``,
9095 or 9099); ``ID`` is the approval's id as the notice states it, as a reader copies it; and
the two lines that start the catcher and the service run as two processes this test can stop.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from receiver.embedded.process import free_port
from tests.support.daemons import end
from tests.support.polling import current, eventually
from tests.support.servers import server_missing

ROOT = Path(__file__).resolve().parents[2]
SECTION = "Try an approval locally"
# What the README writes, and what the test puts in its place (Walk.local).
README_DIR = "/tmp/try-approval"
README_PORT = "9095"
README_CATCHER_PORT = "9099"
# The approval's id, as the notice ends: "Run <uuid> · approval <uuid>".
NOTICE_IDS = re.compile(r"^Run ([0-9a-f-]{36}) · approval ([0-9a-f-]{36})$", re.M)


@dataclass(frozen=True)
class Blocks:
    """The section's shell blocks, by what each does (README order)."""

    path: str
    files: str
    start: str
    post: str
    look: str
    decide: str
    after: str
    shown_notice: str  # the example of what `cat caught.log` shows


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {SECTION}\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, f"README.md has no section '## {SECTION}'"
    return match.group(1)


def _blocks() -> Blocks:
    section = _section()
    # Opening and closing fences pair up in order: one pattern finds every block.
    fenced: list[tuple[str, str]] = re.findall(r"^```(\w*)\n(.*?)^```$", section, re.M | re.S)
    shell = [body for kind, body in fenced if kind == "sh"]
    plain = [body for kind, body in fenced if not kind]
    assert len(shell) == 7, f"the walkthrough's shell blocks changed: {shell}"
    path, files, start, post, look, decide, after = shell
    assert "export PATH=" in path
    assert f"mkdir {README_DIR}" in files
    assert start.rstrip().endswith("serve")
    assert "curl" in post
    assert look.strip() == "cat caught.log"
    assert "approvals approve ID" in decide
    assert "remediator runs" in after
    (shown,) = plain
    return Blocks(path, files, start, post, look, decide, after, shown)


def _quoted_banner() -> list[str]:
    """What the section quotes of the banner (the code spans of "its banner says ..."), each
    with its blanks folded; the ``mode:`` label's padding is the banner's, not the quote's."""
    match = re.search(r"its banner says (.*?)\):\n", _section(), re.S)
    assert match, "the walkthrough no longer says what the banner says"
    spans = re.findall(r"`([^`]+)`", match.group(1))
    assert len(spans) >= 2, spans
    return [" ".join(s.split()).removeprefix("mode: ") for s in spans if s != "alert.json"]


@dataclass
class Walk:
    """One reader's run through the section: where it happens, its ports and environment."""

    base: Path
    port: int
    catcher_port: int
    env: dict[str, str]

    @property
    def directory(self) -> Path:
        return self.base / "try-approval"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def local(self, block: str) -> str:
        """The block with this walk's directory and ports for the README's."""
        return (
            block.replace(README_DIR, str(self.directory))
            .replace(README_PORT, str(self.port))
            .replace(README_CATCHER_PORT, str(self.catcher_port))
        )

    def bash(self, block: str, cwd: Path) -> str:
        """Run the block as a reader pastes it; its stdout. A failure fails the test with
        what it said."""
        done = subprocess.run(
            ["bash", "-e", "-c", self.local(block)],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{block}\nexit {done.returncode}: {done.stderr}"
        return done.stdout

    def caught(self) -> str:
        log = self.directory / "caught.log"
        return log.read_text() if log.exists() else ""


@pytest.fixture
def walk() -> Iterator[Walk]:
    """A clone whose .venv/bin/remediator is this checkout, and a directory outside pytest's
    tmp_path for the walkthrough (as root, PostgreSQL's own account must traverse its parents:
    see tests/support/served.embedded_dir)."""
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            server_missing(f"{tool} (apt-get install {tool}; hack/e2e/install.sh)")
    path_block = _blocks().path
    base = Path(tempfile.mkdtemp(prefix="remediator-readme-"))
    try:
        clone = base / "clone"
        (clone / ".venv" / "bin").mkdir(parents=True)
        shim = clone / ".venv" / "bin" / "remediator"
        shim.write_text(
            f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m receiver.cli "$@"\n'
        )
        shim.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
        env.pop("KUBECONFIG", None)
        env["HOME"] = str(base / "home")  # no ~/.kube/config: Kubernetes steps stay dry-run
        found = Walk(base, free_port(), free_port(), env)
        found.env["PATH"] = found.bash(path_block + '\nprintf %s "$PATH"', cwd=clone)
        yield found
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _start(walk: Walk, line: str, *, read: bool = False) -> subprocess.Popen[str]:
    """One line of the start block as its own process (``&`` left off: the test stops it);
    with ``read``, its stdout and stderr come to the test through one pipe."""
    command = "exec " + walk.local(line).removesuffix("&").strip()
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=walk.directory,
        env=walk.env,
        text=True,
        stdout=subprocess.PIPE if read else None,
        stderr=subprocess.STDOUT if read else None,
    )


def _banner(proc: subprocess.Popen[str], timeout_s: float = 120) -> str:
    """The service's output up to its banner's first line; fails with the output when the
    service ends first or says nothing of the kind within ``timeout_s``."""
    seen: list[str] = []
    found = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "listening on" in line:
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout_s) or not any("listening on" in s for s in seen):
        pytest.fail("remediator serve did not start:\n" + "".join(seen[-60:]))
    return "".join(seen)


async def test_the_readme_walkthrough_gets_an_approval_and_acts_on_it(walk: Walk) -> None:
    blocks = _blocks()
    walk.bash(blocks.files, cwd=walk.base)
    catcher_line, serve_line = blocks.start.strip().splitlines()
    catcher = _start(walk, catcher_line)
    serve = _start(walk, serve_line, read=True)
    try:
        output = _banner(serve)
        assert f"listening on {walk.url}" in output
        # What the README quotes of the banner is in it (blanks folded: the quotes wrap). It
        # suggested posting high-memory.json, which the walkthrough's one rule does not match.
        said = " ".join(output.split())
        for quoted in _quoted_banner():
            assert quoted in said, output
        assert "high-memory.json" not in output
        assert "warning" not in output.lower(), output  # nothing in the files is warned about
        async with aiohttp.ClientSession() as session:
            await eventually(
                current(lambda: _answers(walk.catcher_port)), what="the catcher listens"
            )
            assert walk.bash(blocks.post, cwd=walk.base).strip() == (
                '{"accepted":1,"duplicates":0}'
            )
            await eventually(
                current(lambda: "Review and decide: " in walk.caught()),
                what="the approval request reaches the catcher",
            )
            notice = walk.bash(blocks.look, cwd=walk.directory)
            _looks_like_the_readme(notice, walk.local(blocks.shown_notice))
            link = re.search(r"^Review and decide: (\S+)$", notice, re.M)
            assert link, notice
            assert link.group(1).startswith(f"{walk.url}/approve/k1.."), notice
            async with session.get(link.group(1)) as page:
                assert page.status == 200
                assert "trying an approval" in await page.text()
            ids = NOTICE_IDS.search(notice)
            assert ids, notice
            run_id, approval_id = ids.groups()

            decided = walk.bash(blocks.decide.replace(" ID ", f" {approval_id} "), walk.directory)
            assert approval_id in decided  # the list
            assert "approved by local" in decided

            await eventually(
                current(lambda: "/called " in walk.caught()),
                what="the approved step calls the catcher",
            )
            after = walk.bash(blocks.after, cwd=walk.directory)
            assert "/called {'said': 'trying an approval'}" in after
            assert "Approved by local" in after
            runs = after.split("/called ", 1)[1]
            for shown in (run_id, "try-approval", "succeeded"):
                assert shown in runs, runs

            token = (walk.directory / ".data" / "operator-token").read_text().strip()
            bearer = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{walk.url}/runs", headers=bearer) as page:
                assert page.status == 200
                assert run_id in await page.text()
    finally:
        # Ctrl-C, as the README says; then the catcher (`kill %1`).
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(60)
        finally:
            end(serve, 5)
            end(catcher, 5)
    assert serve.returncode == 0


def _answers(port: int) -> bool:
    """True once something accepts connections on the port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _looks_like_the_readme(notice: str, shown: str) -> None:
    """The README's example of the request holds the lines the catcher printed: those with
    nothing run-specific word for word, the link up to its token, the others by their start."""
    got = notice.strip().splitlines()
    want = shown.strip().splitlines()
    assert len(got) == len(want), (notice, shown)
    for seen, example in zip(got, want, strict=True):
        if example.startswith("Review and decide: "):
            assert seen.startswith(example.split("…")[0]), (seen, example)
        elif example.startswith(("Expires: ", "Run ")):
            assert seen.split(" ", 1)[0] == example.split(" ", 1)[0], (seen, example)
        else:
            assert seen == example, (seen, example)
