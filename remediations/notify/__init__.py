"""Notifications: telling people what the remediator did, in Slack or to any JSON webhook.

- ``message``: ``Message`` (the alert, the target, what was done with before/after, links back
  to the run) and its two renderings: a Slack incoming-webhook payload (values escaped for
  mrkdwn) and a generic JSON document. Pure.
- ``notifier``: ``Channel`` and ``Notifier.send(channel, message) -> Delivery``, which never
  raises: a notification that cannot be delivered is reported, never fails a run
- ``action``: the ``notify`` action, for a rule's steps

Nothing is imported here, so importing the package does not load aiohttp.
"""
