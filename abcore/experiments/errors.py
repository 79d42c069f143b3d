"""The errors of experiment management: a request abcore refuses, with a message for the person who made it."""

from __future__ import annotations

from collections.abc import Sequence

from abcore.errors import Conflict, Invalid, NotFound


class ExperimentError(Invalid, ValueError):
    """A request abcore refuses; the message is meant for the person who made it."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class ExperimentNotFound(ExperimentError, NotFound):
    """No experiment has that id or name."""


class InvalidTransition(ExperimentError, Conflict):
    """The lifecycle action is not allowed from the experiment's current status."""


class ApprovalRequired(InvalidTransition):
    """The store requires an approval before a draft starts, and this draft has none for its configuration."""
