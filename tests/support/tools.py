"""Tools the tests build from source (hack/*/build.sh): where to find one.

Each build script prints the path of what it built (or reused from its cache) as its last line;
an environment variable can name that path instead (``make test`` sets them all once).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["ToolUnavailable", "built_tool"]


class ToolUnavailable(RuntimeError):
    """The tool could not be found or built; the message says which and why."""


def built_tool(env_var: str, build_script: Path, *, timeout_s: float) -> Path:
    """``$env_var`` if set, else the last line ``build_script`` prints (build progress goes to
    stderr). Raises ToolUnavailable when the script fails or outlasts ``timeout_s`` seconds."""
    named = os.environ.get(env_var)
    if named:
        return Path(named)
    try:
        proc = subprocess.run(
            ["bash", str(build_script)],
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolUnavailable(f"{build_script} did not finish in {timeout_s}s") from exc
    except OSError as exc:
        raise ToolUnavailable(f"{build_script}: {exc}") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ToolUnavailable(
            f"{build_script} failed with exit code {proc.returncode}; see its stderr above"
        )
    return Path(lines[-1])
