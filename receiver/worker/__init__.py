"""The worker of one replica: claims alert events and jobs, drives the pipeline, settles claims.

``loop.py`` is the loop (claiming with leases, LISTEN/NOTIFY wake-ups, start and graceful stop);
``attempt.py`` is one attempt at one claimed item (its lease kept while it runs, and how its
claim ends: done, wait, or a failed attempt, bounded, then dead). Import from here::

    from receiver.worker import Worker
"""

from __future__ import annotations

from receiver.worker.loop import DEFAULT_MAX_ATTEMPTS, Process, ProcessJob, Worker, default_owner

__all__ = ["DEFAULT_MAX_ATTEMPTS", "Process", "ProcessJob", "Worker", "default_owner"]
