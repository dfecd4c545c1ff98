"""``python -m bench`` (``make bench``): the intake round (bench/intake.py), then the storm
round (bench/storm.py), each on PostgreSQL and Redis of its own; ``--intake-only`` and
``--storm-only`` run one. Options: ``python -m bench --help``."""

from __future__ import annotations

import argparse
import asyncio

from bench import intake, storm
from receiver.config import ConfigError
from receiver.embedded import EmbeddedError


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--intake-only", action="store_true", help="skip the storm round")
    only.add_argument("--storm-only", action="store_true", help="skip the intake round")
    intake.add_arguments(parser)
    storm.add_arguments(parser)
    args = parser.parse_args()
    try:
        if not args.storm_only:
            asyncio.run(intake.run(args))
        if not args.intake_only:
            asyncio.run(storm.run(args))
    except (EmbeddedError, ConfigError) as exc:
        # PostgreSQL refusing a --postgres-setting at start, or settings `serve` would refuse:
        # what to fix, without a traceback.
        parser.exit(2, f"{parser.prog}: {exc}\n")


if __name__ == "__main__":
    main()
