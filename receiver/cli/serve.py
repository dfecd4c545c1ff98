"""``remediator serve``: the webhook receiver and the workers, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import click
import structlog

from receiver.cli.common import BadUsage, Integer, UserError, state
from receiver.config import ConfigError, named
from receiver.config.values import host_problem

__all__ = ["serve"]


@click.command()
@click.option("--host", default=None, help="Listen address (default from settings: 127.0.0.1).")
@click.option(
    "--port",
    type=Integer(0, 65535),
    default=None,
    help="Listen port (default from settings: 9095).",
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the webhook receiver and the workers until SIGINT/SIGTERM."""
    settings = state(ctx).settings()
    update: dict[str, Any] = {}
    if host is not None:
        if problem := host_problem(host, "--port (REMEDIATOR_PORT)"):
            raise BadUsage(f"--host: {problem}")
        update["host"] = host
    if port is not None:
        update["port"] = port
    if update:
        settings = settings.model_copy(update=update)

    from receiver.log_setup import configure_logging

    configure_logging(settings.log_level, settings.log_format.value)

    # Imported here: the service pulls in asyncpg, redis and the Kubernetes client, which the
    # other commands do not need.
    from receiver.embedded import EmbeddedError
    from receiver.rules.errors import RuleSetError
    from receiver.runtime import (
        event_loop_factory,
        run_bounded,
        signals_wait_for_threads,
        tune_garbage_collector,
    )
    from receiver.service import run_service
    from receiver.startup import StartupError
    from receiver.stop_budget import LEFTOVERS_S

    async def until_stopped() -> None:
        # A SIGTERM during the start (the embedded servers starting, the stores connecting,
        # migrations) ends it, cleaning up; run_service puts its own stop in this handler's
        # place once it can stop gracefully. Python has no SIGTERM handler of its own: as a
        # container's PID 1 the kernel dropped the signal (the pod waited out its grace), and
        # elsewhere it killed the process, orphaning the embedded PostgreSQL and Redis.
        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        await run_service(settings, config_file=state(ctx).config_file)

    tune_garbage_collector()
    with signals_wait_for_threads() as quiet:
        try:
            # Not `with asyncio.Runner()`: its close waits for every task still running without a
            # limit, and one that ignores its cancellation held the exit past the pod's grace.
            run_bounded(
                until_stopped(),
                leftovers_s=LEFTOVERS_S,
                log=structlog.get_logger("remediator"),
                loop_factory=event_loop_factory(),
                on_main_end=quiet,
            )
        except RuleSetError as exc:
            for error in exc.errors:
                click.echo(str(error), err=True)
            raise UserError(_rules_refused(len(exc.errors), settings.rules_dir)) from None
        except (EmbeddedError, StartupError) as exc:
            raise UserError(str(exc)) from None
        except ConfigError as exc:
            raise BadUsage(f"configuration: {exc.message}") from None
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass  # SIGINT, or SIGTERM before the service could stop gracefully: stopped, cleaned up


def _rules_refused(errors: int, directory: Path) -> str:
    """The last line of a start the rules stopped. With no rules directory at all, the setting
    that names it: a service started away from the clone said only ``1 error(s) in the rule
    files``, as if a rule were wrong."""
    if not directory.is_dir():
        return f"no rules directory: {named('rules_dir')} is {str(directory)!r}; not starting"
    return f"{errors} error(s) in the rule files; not starting"
