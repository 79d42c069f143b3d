"""``track``: a metric value (or feedback / error event) for the variant a user was assigned, written behind.

The event is checked here against what the store holds (column widths, finite values) so a bad event is
refused at once (``False``, logged) instead of failing a whole write batch later. ``timestamp`` (when the event
happened; default now) follows the one rule of event timestamps, :func:`abcore.store.values.parse_timestamp`
(the event importer's): naive = UTC, UTC time within years 1-9999.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from abcore.assign.cache import (
    TRACKABLE_EVENTS,
    check_attributes,
    check_experiment_ref,
    check_user_id,
    jsonable,
)
from abcore.store.tables import EventType, ExperimentStatus, utcnow
from abcore.store.values import name_problem, parse_timestamp

if TYPE_CHECKING:
    from abcore.assign.assigner import Assigner

_RUNNING = ExperimentStatus.RUNNING.value
_PAUSED = ExperimentStatus.PAUSED.value
_CONVERSION = EventType.CONVERSION.value
#: Column widths of ab_experiment_results that ``track`` checks before buffering (the store would reject more).
METRIC_NAME_MAX = 200
REQUEST_ID_MAX = 255
USER_ID_MAX = 255


def track(
    client: Assigner,
    user_id: str,
    experiment: str | int | None,
    metric_name: str,
    value: float | None = None,
    *,
    properties: Mapping[str, Any] | None = None,
    event_type: str = "conversion",
    request_id: str | None = None,
    timestamp: datetime | None = None,
) -> bool:
    """:meth:`Assigner.track <abcore.assign.assigner.Assigner.track>` of ``client``."""
    value = _checked_arguments(user_id, experiment, metric_name, value, properties, event_type, timestamp)
    refusal = _refusal(user_id, metric_name, value, request_id)
    if refusal is None and timestamp is not None:
        try:
            timestamp = parse_timestamp(timestamp)
        except ValueError as exc:
            refusal = str(exc)
    if refusal is not None:
        client._log_failure("track", ValueError(refusal), key="track")
        return False
    try:
        if client._broken is not None:
            client._log_failure("track", None, key="config")
            return False
        deadline = time.monotonic() + client.timeout
        d = client._lookup(experiment, deadline)
        if d is None or d.status not in (_RUNNING, _PAUSED):
            return False
        variant_id = client._sticky.get((d.id, user_id))
        if variant_id is None:
            variant_id, _known = client._read_stored(d, user_id, deadline)
            if variant_id is None:
                return False
        assert client._writer is not None
        client._writer.add_event(
            (
                d.id,
                variant_id,
                user_id,
                event_type,
                metric_name,
                None if value is None else float(value),
                request_id,
                jsonable(properties),
                utcnow() if timestamp is None else timestamp,
            )
        )
        return True
    except Exception as exc:  # noqa: BLE001 - never break the caller
        client._log_failure("track", exc)
        return False


def _checked_arguments(
    user_id: str, experiment: str | int | None, metric_name: str, value: Any, properties: Mapping[str, Any] | None,
    event_type: str, timestamp: Any,
) -> Any:
    """The event's value (1.0 for a conversion without one); TypeError / ValueError for a bad argument."""
    check_user_id(user_id)
    check_experiment_ref(experiment)
    if not isinstance(metric_name, str) or not metric_name:
        raise ValueError("metric_name must be a non-empty string")
    if event_type not in TRACKABLE_EVENTS:
        raise ValueError(f"event_type must be one of {sorted(TRACKABLE_EVENTS)}, got {event_type!r}")
    if value is not None:
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real | Decimal):
            raise TypeError(f"value must be a number or None, got {type(value).__name__}")
    elif event_type == _CONVERSION:
        value = 1.0
    check_attributes(properties, "properties object")
    if timestamp is not None and not isinstance(timestamp, datetime):
        raise TypeError(f"timestamp must be a datetime or None, got {type(timestamp).__name__}")
    return value


def _refusal(user_id: str, metric_name: str, value: Any, request_id: Any) -> str | None:
    """Why the store would reject this tracked event (None: it would not)."""
    if len(user_id) > USER_ID_MAX:
        return f"user_id is {len(user_id)} characters, the store holds at most {USER_ID_MAX}"
    if len(metric_name) > METRIC_NAME_MAX:
        return f"metric_name {metric_name[:40]!r}... is {len(metric_name)} characters, the store holds at most {METRIC_NAME_MAX}"
    character = name_problem("metric_name", metric_name)
    if character is not None:
        return character
    if value is not None:
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            return f"value must be finite, got {value!r}"
    if request_id is not None:
        if not isinstance(request_id, str):
            return f"request_id must be a string or None, got {type(request_id).__name__}"
        if len(request_id) > REQUEST_ID_MAX:
            return f"request_id is {len(request_id)} characters, the store holds at most {REQUEST_ID_MAX}"
    return None
