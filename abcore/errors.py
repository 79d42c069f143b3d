"""abcore's error hierarchy: every error abcore raises for its user is an :class:`AbcoreError`.

The HTTP API (:mod:`abcore.api.errors`) and the CLI (:mod:`abcore.cli.main`) map these classes in one
place each, so a module raises the class that says what went wrong and never picks a status code:

==================  ===========  =====================================================
class               HTTP status  CLI
==================  ===========  =====================================================
:class:`NotFound`     404        exit code 1, ``error: <message>`` on stderr
:class:`Invalid`      422        exit code 1, ``error: <message>`` on stderr
:class:`Conflict`     409        exit code 1, ``error: <message>`` on stderr
:class:`Unavailable`  503        exit code 1, ``error: <message>`` on stderr
==================  ===========  =====================================================

The message is meant for the person who made the request. This module imports nothing, so any
module (also the request path in :mod:`abcore.assign`) may raise these.
"""

from __future__ import annotations

__all__ = ["AbcoreError", "Conflict", "Invalid", "NotFound", "Unavailable"]


class AbcoreError(Exception):
    """Base of abcore's expected errors; its message says what to fix, in the user's words."""


class NotFound(AbcoreError):
    """The thing asked for (an experiment, a metric, a key ...) does not exist.

    HTTP 404; CLI exit code 1.
    """


class Invalid(AbcoreError):
    """The input is refused (a bad value, a malformed file or setting); the message names every problem.

    HTTP 422; CLI exit code 1.
    """


class Conflict(AbcoreError):
    """The request is well-formed but not allowed in the current state (e.g. a lifecycle transition).

    HTTP 409; CLI exit code 1.
    """


class Unavailable(AbcoreError):
    """A service abcore depends on (the store) did not answer; retrying later may succeed.

    HTTP 503; CLI exit code 1.
    """
