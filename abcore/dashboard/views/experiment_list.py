"""The experiment list of the landing page: one line per experiment, search, filters, sort, progress.

Pure functions over frozen dataclasses; the page builds the items from two queries for all
experiments (:func:`abcore.analysis.overview.experiment_overview`, :func:`abcore.analysis.overview.variant_users`),
never one per card.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from abcore.analysis.verdict import metric_outcome
from abcore.store.tables import utcnow

__all__ = [
    "SORT_OPTIONS",
    "ListItem",
    "ShipAdvice",
    "build_items",
    "days_left",
    "filter_items",
    "metric_choices",
    "owner_choices",
    "planned_users",
    "sample_progress",
    "ship_advice",
    "sort_items",
]

#: Sort keys of the list and their labels (every order puts missing values last).
SORT_OPTIONS: dict[str, str] = {
    "created": "Newest first",
    "start": "Start date (latest first)",
    "participants": "Participants (most first)",
    "activity": "Last activity (most recent first)",
}

NO_OWNER = "—"


@dataclass(frozen=True)
class ListItem:
    """One experiment of the list, with what the cards, the table and the filters need."""

    id: int
    name: str
    description: str
    status: str
    owner: str
    primary_metric: str
    metrics: tuple[str, ...]  # primary, secondary, guardrails (each once, in that order)
    variants: int
    participants: int
    min_samples_per_variant: int
    min_duration_days: int
    created_at: datetime | None
    started_at: datetime | None
    stopped_at: datetime | None
    last_activity: datetime | None
    archived: bool
    layer: str = ""  # the layer's name ("" outside any layer)

    @property
    def planned(self) -> int:
        """Planned sample size: ``min_samples_per_variant x variants`` (0 = none planned)."""
        return planned_users(self.min_samples_per_variant, self.variants)

    @property
    def progress(self) -> float | None:
        """``participants / planned`` (may exceed 1); ``None`` without a planned sample size."""
        return sample_progress(self.participants, self.planned)

    def days_left(self, now: datetime | None = None) -> int | None:
        """Whole days until the minimum duration is reached (see :func:`days_left`)."""
        return days_left(self.min_duration_days, self.started_at, self.stopped_at, now=now)


def planned_users(min_samples_per_variant: int, variants: int) -> int:
    """The planned sample size of an experiment: users per variant times the number of variants."""
    return max(0, int(min_samples_per_variant or 0)) * max(0, int(variants))


def sample_progress(participants: int, planned: int) -> float | None:
    """Share of the planned sample reached, ``participants / planned``; ``None`` when nothing is planned."""
    if planned <= 0:
        return None
    return participants / planned


def days_left(
    min_duration_days: int, started_at: datetime | None, stopped_at: datetime | None = None, *,
    now: datetime | None = None,
) -> int | None:
    """Whole days until ``min_duration_days`` have passed since ``started_at``.

    ``ceil(min_duration_days - elapsed days)``, never below 0; the elapsed time ends at
    ``stopped_at`` once stopped. Not started yet: the full minimum. ``None`` when the
    experiment has no minimum duration.
    """
    if not min_duration_days or min_duration_days <= 0:
        return None
    if started_at is None:
        return int(min_duration_days)
    end = stopped_at or now or utcnow()
    elapsed = max(0.0, (end - started_at).total_seconds() / 86400.0)
    return max(0, math.ceil(min_duration_days - elapsed - 1e-9))


def _latest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def build_items(
    experiments: Iterable[Any],
    overview: Mapping[int, Any],
    variants: Mapping[int, Sequence[Any]],
) -> list[ListItem]:
    """List items from experiment rows, their :class:`abcore.analysis.overview.ExperimentOverview` and variants.

    ``last_activity`` is the latest of the last event and the last change of the definition
    (``updated_at``); ``archived`` reads ``archived_at`` where the store has it.
    """
    items: list[ListItem] = []
    for e in experiments:
        ov = overview.get(e.id)
        metrics = tuple(dict.fromkeys([e.primary_metric, *(e.secondary_metrics or []), *(e.guardrail_metrics or [])]))
        items.append(ListItem(
            id=int(e.id),
            name=e.name,
            description=e.description or "",
            status=e.status,
            owner=(e.created_by or "").strip(),
            primary_metric=e.primary_metric,
            metrics=metrics,
            variants=len(variants.get(e.id, ())),
            participants=int(ov.participants) if ov is not None else 0,
            min_samples_per_variant=int(e.min_samples_per_variant or 0),
            min_duration_days=int(e.min_duration_days or 0),
            created_at=e.created_at,
            started_at=e.started_at,
            stopped_at=e.stopped_at,
            last_activity=_latest(ov.last_event_at if ov is not None else None, e.updated_at),
            archived=getattr(e, "archived_at", None) is not None,
        ))
    return items


def with_layers(items: Iterable[ListItem], experiments: Iterable[Any], layers: Mapping[int, str]) -> list[ListItem]:
    """``items`` with the name of each experiment's layer (``layers``: layer id -> name; "" outside any layer)."""
    layer_of = {e.id: layers.get(getattr(e, "layer_id", None) or -1, "") for e in experiments}
    return [replace(i, layer=layer_of.get(i.id, "")) for i in items]


def owner_choices(items: Iterable[ListItem]) -> list[str]:
    """The owners to filter by, sorted; experiments without an owner appear as ``'—'``."""
    return sorted({i.owner or NO_OWNER for i in items}, key=str.casefold)


def metric_choices(items: Iterable[ListItem]) -> list[str]:
    """Every metric an experiment uses (primary, secondary or guardrail), sorted."""
    return sorted({m for i in items for m in i.metrics}, key=str.casefold)


def filter_items(
    items: Iterable[ListItem],
    *,
    search: str = "",
    statuses: Iterable[str] = (),
    owners: Iterable[str] = (),
    metrics: Iterable[str] = (),
    include_archived: bool = False,
    layers: Iterable[str] = (),
) -> list[ListItem]:
    """The items that match every given filter (an empty filter matches everything).

    ``search`` matches name or description, case-insensitive, every word somewhere; ``metrics``
    keeps experiments using any of the metrics, ``layers`` those in any of the layers; archived experiments only
    with ``include_archived``.
    """
    words = [w.casefold() for w in (search or "").split()]
    statuses, owners, metrics, layers = set(statuses), set(owners), set(metrics), set(layers)
    out = []
    for item in items:
        if item.archived and not include_archived:
            continue
        text = f"{item.name}\n{item.description}".casefold()
        if any(w not in text for w in words):
            continue
        if statuses and item.status not in statuses:
            continue
        if owners and (item.owner or NO_OWNER) not in owners:
            continue
        if metrics and not metrics.intersection(item.metrics):
            continue
        if layers and item.layer not in layers:
            continue
        out.append(item)
    return out


def sort_items(items: Iterable[ListItem], key: str = "created") -> list[ListItem]:
    """Items ordered by ``key`` (see :data:`SORT_OPTIONS`), largest/latest first, missing values last;
    ties keep the newest experiment (highest id) first."""
    if key not in SORT_OPTIONS:
        raise ValueError(f"Unknown sort key {key!r}; choose one of {', '.join(SORT_OPTIONS)}.")

    def value(item: ListItem) -> Any:
        return {
            "created": item.created_at,
            "start": item.started_at,
            "participants": item.participants,
            "activity": item.last_activity,
        }[key]

    items = list(items)
    present = [i for i in items if value(i) is not None]
    missing = [i for i in items if value(i) is None]
    present.sort(key=lambda i: (value(i), i.id), reverse=True)
    missing.sort(key=lambda i: i.id, reverse=True)
    return present + missing


@dataclass(frozen=True)
class ShipAdvice:
    """What the ship dialog proposes: the recommended variant and the guardrails each variant broke.

    ``variant_id`` is the verdict's variant for ``ship`` / ``shipped``, the control otherwise
    (``keep_control``, ``no_winner`` of a completed experiment; ``keep_running`` recommends no change either); ``breaches`` maps a variant id
    to the guardrail metrics whose outcome is ``"worse"`` for it (:mod:`abcore.analysis.verdict`).
    """

    variant_id: int | None
    decision: str
    reason: str
    breaches: Mapping[int, tuple[str, ...]]


def ship_advice(results: Any) -> ShipAdvice:
    """The ship dialog's default and warnings from :func:`abcore.analysis.pipeline.analyze`'s ``Results``: the
    verdict and outcomes of the judge (:mod:`abcore.analysis.verdict`), never judged again here."""
    by_name = {v.name: v.variant_id for v in results.variants}
    control = next((v.variant_id for v in results.variants if v.is_control), None)
    verdict = results.verdict
    chosen = by_name.get(verdict.variant) if verdict.decision in ("ship", "shipped") else None
    breaches: dict[int, list[str]] = {}
    for m in results.metrics:
        if m.role == "guardrail" and metric_outcome(m) == "worse":
            names = breaches.setdefault(m.variant_id, [])
            if m.metric not in names:
                names.append(m.metric)
    return ShipAdvice(
        variant_id=chosen if chosen is not None else control,
        decision=verdict.decision,
        reason=verdict.reason,
        breaches={vid: tuple(names) for vid, names in breaches.items()},
    )
