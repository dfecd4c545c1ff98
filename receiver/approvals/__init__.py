"""Approvals of risky steps: signed links, the state machine, who may decide, Slack, the page.

    plan.py      what an approval binds (the step's previewed change) and its hash    pure
    state.py     states, decisions, why a decision cannot be taken                     pure
    policy.py    identities and the approvers' allow-lists                             pure
    tokens.py    signed, expiring, key-rotated link tokens (itsdangerous)
    messages.py  what a notification says (Slack message, JSON body)                   pure
    notify.py    the notifier interface and a webhook sender (aiohttp)
    desk.py      ApprovalDesk: request, gate, decide, expire, cancel, supersede
    page.py      the confirmation page's view model and templates/ (jinja2)
    slack.py     Slack interactivity: signature check (slack_sdk) and the payload

The pipeline asks the desk (``receiver.pipeline.approve``); the HTTP edge serves the page, the
API and the Slack callback (``receiver.http.approvals``); the store keeps every move atomic
(``receiver.store.approvals``). Standards: research/alertmanager-protocol.md §5.
"""
