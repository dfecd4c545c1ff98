"""``notify``: a rule's step that sends a message to a configured channel.

The message is a template over the alert (``{{ labels.namespace }}``,
``{{ annotations.summary }}``, ``{{ target.key }}``, ``{{ run.id }}``; see
``remediations.templates``); for a Slack channel every value is escaped for mrkdwn, and for
every channel a line break in what the alert says (a label's or an annotation's name or value,
an alert field) is shown as `` ↵ `` (``one_line``): the template's own breaks, written or
printed (``{{ "\\n" }}``, ``join("\\n")``), are the message's lines, and no annotation writes
one that reads as the author's. It acts on any target (the run's), changes nothing in it, and
never fails a run: a message that cannot be delivered ends the step as ``undelivered``, with
what went wrong. In dry-run mode nothing is sent (the step says what would have been); the
pipeline's own announcements of dry runs are the way to watch a rule before trusting it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from remediations import names
from remediations.base import ActionContext, Change, Outcome, ParamsError, Result, Risk
from remediations.notify.message import ChannelKind, Event, Message, mrkdwn_value
from remediations.notify.notifier import Notifier
from remediations.params import StrictParams
from remediations.targets import KINDS, Target
from remediations.templates import TemplateFailed, check_template, render, template_values
from remediations.visible_text import one_line

__all__ = ["Notify", "NotifyParams"]

DEFAULT_TITLE = "{{ labels.alertname }} on {{ target.key }}"


class NotifyParams(StrictParams):
    """``channel``: a configured channel's name. ``message``: the body, a template.
    ``title``: the headline, a template (default: alert name and target)."""

    template_fields: ClassVar[frozenset[str]] = frozenset({"message", "title"})

    channel: str
    message: str = Field(min_length=1)
    title: str = DEFAULT_TITLE

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not names.is_connection_name(value):
            raise ValueError(
                f"{value!r} is not a channel name (a lowercase letter, then lowercase letters, "
                "digits or '_', at most 63)"
            )
        return value

    @field_validator("message", "title")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)


def _on_their_lines(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (``template_values``) with what the alert says, its labels' and annotations'
    names and values and its own fields, each on its line (``one_line``). The alert's text is
    made one line before the template reads it, not each printed value after: a value printed
    is also what the template itself made, and ``{{ lines | join("\\n") }}``, ``{{ "\\n" }}``
    or ``wordwrap`` are breaks its author wrote."""
    alert = {k: one_line(v) if isinstance(v, str) else v for k, v in values["alert"].items()}
    return {
        **values,
        "labels": {one_line(k): one_line(v) for k, v in values["labels"].items()},
        "annotations": {one_line(k): one_line(v) for k, v in values["annotations"].items()},
        "alert": alert,
    }


class Notify:
    """Send a templated message to a channel; never changes the target, never fails a run."""

    name: ClassVar[str] = "notify"
    Params: ClassVar[type[BaseModel]] = NotifyParams
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = False
    target_kinds: ClassVar[frozenset[str]] = frozenset(KINDS)
    # At least once: a step taken up after a crash sends its message again rather than
    # leaving it unsent or failing the run over it. A second copy of a message tells people
    # nothing new and changes no system; a lost page can leave nobody told.
    replay_safe: ClassVar[bool] = True

    def requires(self, target: Target) -> frozenset[str]:
        return frozenset({"notify"})

    def describe(self, target: Target, params: BaseModel) -> str:
        return f"notify channel {self._params(params).channel!r}"

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        typed = self._params(params)
        notifier: Notifier = ctx.clients.get("notify")
        message = self._message(ctx, target, typed, notifier)
        return Change(
            f"send to channel {typed.channel!r}: {message.title}",
            {},
            {"title": message.title, "text": message.text},
        )

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        typed = self._params(params)
        notifier: Notifier = ctx.clients.get("notify")
        try:
            message = self._message(ctx, target, typed, notifier)
        except TemplateFailed as exc:
            # Nothing to send; like a channel that is down, this does not fail the run.
            return Result(Outcome.UNDELIVERED, f"could not notify {typed.channel!r}: {exc.message}")
        shown = {"channel": typed.channel, "title": message.title, "text": message.text}
        if ctx.dry_run:
            return Result(
                Outcome.DRY_RUN,
                f"dry run (nothing sent): would notify {typed.channel!r}: {message.title}",
                after=shown,
            )
        # The step in the message's key: another step's same text is another message.
        step = "" if ctx.step is None else f".{ctx.phase}.{ctx.step}"
        delivery = await notifier.send(typed.channel, message, step=step)
        if not delivery.ok:
            return Result(
                Outcome.UNDELIVERED,
                f"could not notify {typed.channel!r}: {delivery.detail}",
                after=shown,
            )
        return Result(Outcome.OK, f"notified {typed.channel!r}: {delivery.detail}", after=shown)

    def _message(
        self, ctx: ActionContext, target: Target, params: NotifyParams, notifier: Notifier
    ) -> Message:
        channel = notifier.channels.get(params.channel)
        slack = channel is not None and channel.kind is ChannelKind.SLACK
        # What the alert says stays on its line (one_line): an annotation's break wrote a line
        # that read as the author's. The author's breaks, literal or printed, are the message's.
        escape: Callable[[str], str] | None = mrkdwn_value if slack else None
        values = _on_their_lines(template_values(ctx, target))
        values["run"] = {**values["run"], "url": notifier.run_url(ctx.run_id)}
        return Message(
            event=Event.STEP,
            # The title is plain text here; the Slack rendering escapes it where it is mrkdwn.
            title=render(params.title, values, one_line, name="title").strip() or target.key,
            text=render(params.message, values, escape, name="message").strip(),
            text_is_mrkdwn=slack,
            rule=ctx.rule,
            run_id=ctx.run_id,
            dry_run=ctx.dry_run,
            target={**target.as_dict(), "key": target.key},
            alert=ctx.alert,
        )

    def _params(self, params: BaseModel) -> NotifyParams:
        if not isinstance(params, NotifyParams):
            raise ParamsError(self.name, f"expected NotifyParams, got {type(params)}")
        return params
