"""The lint warnings of one matcher of a rule's ``match`` that are the service's own:
Alertmanager reads the matcher, and logs nothing of it (``Parsed.describe_warning`` says what
it would log). Pure."""

from __future__ import annotations

from receiver.matchers import Matcher

__all__ = ["matcher_warnings"]


def matcher_warnings(matcher: Matcher) -> list[str]:
    """What misleads in ``matcher``, one message each: a regex whose ``)`` closes Alertmanager's
    anchoring group, a label without a name (intake refuses an alert's label with an empty name,
    ``receiver.alertmanager.Alert``, so every alert reads it as ""). Empty when nothing does."""
    said: list[str] = []
    if matcher.name == "":
        verdict = "matches every alert" if matcher.matches({}) else "never matches"
        # str() writes an empty name as nothing (Alertmanager's Matcher.String()).
        said.append(
            f"'\"\"{matcher}' names a label without a name, which no alert has (intake refuses "
            f"one), so it {verdict}"
        )
    if matcher.escapes_anchors:
        said.append(
            f"the regex of '{matcher}' closes Alertmanager's anchoring group ^(?:...)$, so part "
            "of it is not anchored at both ends (Alertmanager reads it the same way); put the "
            "alternatives in one group"
        )
    return said
