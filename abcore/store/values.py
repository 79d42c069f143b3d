"""What the store's columns can hold, and the rules of names and references: checks shared by everything that
writes to the store or looks something up in it.

PostgreSQL's INTEGER is 32-bit; JSON columns (variant config, targeting, success criteria, assignment attributes,
event properties) must hold finite numbers, integers every consumer keeps exactly, valid Unicode and bounded
nesting (:func:`json_value_problem`). Names hold no control or invisible formatting characters
(:func:`name_problem`), and a reference made of digits is always an id (:func:`is_id_text`).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from abcore.errors import Invalid

#: Largest value of an INTEGER column (32-bit on PostgreSQL).
INT32_MAX = 2**31 - 1
#: How deep a JSON value may nest.
JSON_MAX_DEPTH = 32
#: Integers in JSON must lie in [-JSON_INT_LIMIT, JSON_INT_LIMIT): SQLite's JSON functions and most JSON
#: readers stop at 64 bits.
JSON_INT_LIMIT = 2**63
#: A number written as text (how an event timestamp in epoch seconds or a value may come).
NUMBER_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class UnstorableValue(Invalid, ValueError):
    """A value the store cannot hold; the message is :func:`json_value_problem`'s reason (HTTP 422, a ValueError)."""


def is_number(value: Any) -> bool:
    """True for a finite int or float that is not a bool (what a numeric field accepts)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_id_text(text: str) -> bool:
    """True when ``text`` is all ASCII digits: such a reference is always an id, never a name (experiment names
    cannot be all digits). '³' is a digit to ``str.isdigit`` but not to ``int()``, hence ASCII only."""
    return text.isascii() and text.isdigit()


def id_of(text: str) -> int | None:
    """The id a reference of :func:`is_id_text` digits stands for, None when no INTEGER column holds it."""
    return int(text) if len(text) <= len(str(INT32_MAX)) and int(text) <= INT32_MAX else None


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone UTF-16 surrogate (U+D800-U+DFFF), which no UTF-8 store can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


#: The characters no name (experiment, variant, metric, model) may contain: C0 control characters (NUL, BEL,
#: ESC, tab, newline ...), DEL and C1 control characters, which rewrite a terminal or a log line, and the
#: invisible zero-width and bidirectional formatting characters, which make two different names look alike.
NAME_FORBIDDEN_CHARACTERS = "\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
_NAME_FORBIDDEN = re.compile(f"[{NAME_FORBIDDEN_CHARACTERS}]")


def name_problem(label: str, name: str) -> str | None:
    """Why ``name`` cannot be a name under ``label`` (None when it can): the first character of
    :data:`NAME_FORBIDDEN_CHARACTERS` it holds, by code point (the message never echoes the character)."""
    found = _NAME_FORBIDDEN.search(name)
    if found is None:
        return None
    point = ord(found.group())
    kind = "a control character" if point <= 0x9F else "an invisible formatting character"
    return (
        f"The {label} contains {kind} (U+{point:04X}); names cannot contain control characters or"
        " zero-width / bidirectional formatting characters."
    )


def printable_name(name: str) -> str:
    """``name`` with each character of :data:`NAME_FORBIDDEN_CHARACTERS` written as its escape (``\\x1b``,
    ``\\u200b``), for names stored before the rule: what a terminal shows is what the name holds."""
    return _NAME_FORBIDDEN.sub(lambda m: repr(m.group())[1:-1], name)


def is_plain_json_object(value: Any) -> bool:
    """True for the common flat object every JSON store holds as it is: text keys and values that are ASCII
    text, booleans, None, finite floats or 64-bit integers. A quick yes (about a tenth of the full walk of
    :func:`json_value_problem` on a request path); False only means "walk it"."""
    if not isinstance(value, Mapping):
        return False
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii():
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is int:
            if not -JSON_INT_LIMIT <= item < JSON_INT_LIMIT:
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def json_value_problem(label: str, value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON under ``label`` (None when it can).

    Refused: NaN and infinities (RFC 8259 has no such numbers; PostgreSQL's json type refuses them),
    integers beyond 64 bits, lone surrogates in keys or strings, nesting deeper than
    :data:`JSON_MAX_DEPTH`, keys that are not text, and values that are not JSON at all.
    The walk is iterative, so hostile nesting never exhausts the stack.
    """
    if is_plain_json_object(value):
        return None
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > JSON_MAX_DEPTH:
            return f"The {label} is nested more than {JSON_MAX_DEPTH} levels deep."
        if isinstance(item, Mapping):
            problem = _json_key_problem(label, item)
            if problem:
                return problem
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
        else:
            problem = _json_scalar_problem(label, item)
            if problem:
                return problem
    return None


def _json_key_problem(label: str, item: Mapping[Any, Any]) -> str | None:
    """Why the keys of the JSON object ``item`` cannot be stored (None when all are text without lone surrogates).

    Keys are checked in order; the first bad one decides the message.
    """
    for key in item:
        if not isinstance(key, str):
            return f"The {label} has a key that is not text ({type(key).__name__})."
        if has_lone_surrogate(key):
            return f"The {label} has a key with a lone surrogate (invalid Unicode)."
    return None


def _json_scalar_problem(label: str, item: Any) -> str | None:
    """Why ``item`` (anything but an object or array) is not a storable JSON scalar (None when it is)."""
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, int):
        if not -JSON_INT_LIMIT <= item < JSON_INT_LIMIT:
            return f"The {label} holds an integer beyond 64 bits."
        return None
    if isinstance(item, float):
        if not math.isfinite(item):
            return f"The {label} holds {item!r}; JSON numbers must be finite."
        return None
    if isinstance(item, str):
        if has_lone_surrogate(item):
            return f"The {label} holds text with a lone surrogate (invalid Unicode)."
        return None
    return f"The {label} holds a {type(item).__name__}, which is not a JSON value."


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a reason never echoes a hostile 5,000-digit field."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        text = f"<a number with more than {sys.get_int_max_str_digits()} digits>"
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def parse_timestamp(value: Any) -> datetime:
    """An aware UTC datetime from a ``datetime``, ISO-8601 text (``Z`` allowed; naive = UTC) or epoch seconds:
    THE rule of every event timestamp a caller gives (event import, ``track(timestamp=...)``, the HTTP API).

    Raises ``ValueError`` (its message names the timestamp) for anything else, including NaN,
    booleans, epoch seconds outside 1970-9999, integers too large for a float, and ISO times whose
    UTC equivalent falls outside years 1-9999 (``0001-01-01T00:00:00+14:00``).
    """
    if isinstance(value, datetime):
        return _as_utc(value, value)
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {short_repr(value)}")
    if isinstance(value, int | float) or (isinstance(value, str) and NUMBER_TEXT.match(value.strip())):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds) or not 0 <= seconds < 253402300800:
            raise ValueError(f"timestamp out of range (epoch seconds from 0 to 253402300799): {short_repr(value)}")
        return datetime.fromtimestamp(seconds, tz=UTC)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a timestamp: {short_repr(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp or epoch seconds: {short_repr(value)}") from None
    return _as_utc(parsed, value)


def _as_utc(moment: datetime, raw: Any) -> datetime:
    """``moment`` in UTC (naive = UTC); ``ValueError`` naming ``raw`` when its UTC time is outside years 1-9999."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp out of range (its UTC time is outside years 1-9999): {short_repr(raw)}") from None
