"""The HTTP edge: webhook intake, health, metrics, the run log and the operator's kill switch.

Handlers only authenticate, limit, parse and hand over; nothing here runs a remediation.

- ``app``: ``create_app`` stores the dependencies in the application and adds the routes.
- ``deps``: what the handlers need (Protocols), and the typed application keys they read.
- ``middleware``: the one middleware for authentication, body limits, JSON errors, metrics.
- ``auth``, ``responses``, ``filters``: the authenticator, JSON helpers, the run-log filters.
- one module per route group: ``alerts``, ``health``, ``runs``, ``guards``.
"""
