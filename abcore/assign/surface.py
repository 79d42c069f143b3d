"""Asking by surface: ``assign_layer(user_id, layer)`` — which experiment (and variant) serves this user on a layer.

The recommender asks "what should serve the home slate for this user?" without naming experiments. The
answer is the user's one :class:`~abcore.assign.cache.Assignment` in the layer: from the running or paused
experiment whose range holds the user (:class:`~abcore.assign.layers.LayerDef`), else from the layer default
(the shipped winner, at its rollout percent), else None. It is :meth:`Assigner.assign` of that experiment, so
every promise of ``assign`` holds: no write on the request path, a stored row wins, store trouble answers from
the hash. The layers are loaded with the experiment definitions, never per call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from abcore.assign import definitions
from abcore.assign.cache import Assignment, check_attributes, check_user_id

if TYPE_CHECKING:
    from abcore.assign.assigner import Assigner


def check_layer_ref(layer: Any) -> None:
    """Raise TypeError unless ``layer`` is a str, ValueError when it is empty."""
    if type(layer) is not str and not isinstance(layer, str):
        raise TypeError(f"layer must be a layer name (str), got {type(layer).__name__}")
    if not layer:
        raise ValueError("layer must be a non-empty layer name")


def assign_layer(
    client: Assigner,
    user_id: str,
    layer: str,
    *,
    attributes: Mapping[str, Any] | None = None,
    expose: bool = True,
    request_id: str | None = None,
) -> Assignment | None:
    """The user's one assignment in ``layer`` (its experiment, variant, config and model), or None: the default.

    None when the layer is unknown (or the definitions could never be loaded), when no experiment of the
    layer holds the user and no winner was shipped in it, or when the experiment that holds the user leaves
    them out (targeting, traffic share, a holdout, paused for a user never assigned). Raises
    TypeError/ValueError for bad arguments, like :meth:`~abcore.assign.assigner.Assigner.assign`.
    """
    check_user_id(user_id)
    check_layer_ref(layer)
    check_attributes(attributes)
    try:
        if client._broken is not None:
            client._log_failure("assign", None, key="config")
            return None
        defs = definitions.current(client, time.monotonic() + client.timeout)
        if defs is None:
            return None
        found = defs.layers.get(layer)
        if found is None:
            return None
        experiment = found.experiment_for(user_id)
        if experiment is None:
            experiment = found.default_id
            if experiment is None:
                return None
        return client.assign(user_id, experiment, attributes=attributes, expose=expose, request_id=request_id)
    except Exception as exc:  # noqa: BLE001 - the request path never breaks the caller
        client._log_failure("assign", exc)
        return None
