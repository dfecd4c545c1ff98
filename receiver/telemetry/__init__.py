"""The service's Prometheus metrics (the logging set-up is ``receiver.log_setup``).

``Metrics`` owns its own CollectorRegistry: two services in one process (tests, benchmarks)
never share counters, and nothing registers itself at import time. families.py declares what
is exported (names, help, labels, buckets); metrics.py feeds it: the helpers called as things
happen, the refreshers run at each scrape, and the exposition. Callers import from here::

    from receiver.telemetry import Metrics
"""

from __future__ import annotations

from receiver.telemetry.metrics import Metrics

__all__ = ["Metrics"]
