"""Worker processes of ``remediator serve`` (``worker.processes``): the process that takes the
webhooks runs a worker, and starts the others, each running only a worker over the same stores.

- ``handoff``: what a worker process is given, over its standard input, and how.
- ``child``: a worker process's own main (``python -m receiver.processes.child``).
- ``supervisor``: starting, restarting, reloading and stopping them, and reading their metrics.
"""
