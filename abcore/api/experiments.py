"""``/api/v1/experiments``: create, list, read, change status, ship, metrics, results, export.

Every endpoint calls the functions the dashboard calls (:mod:`abcore.experiments.lifecycle`,
:mod:`abcore.analysis.pipeline`, :mod:`abcore.analysis.metric_counts`, :mod:`abcore.analysis.overview`,
:mod:`abcore.io.csv_export`); nothing is computed here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from abcore import experiments as ex
from abcore.analysis import overview
from abcore.analysis.metric_counts import metric_counts
from abcore.api.deps import Editor, Reader, SessionDep, StateDep
from abcore.api.errors import responses
from abcore.api.schemas import (
    ExperimentIn,
    ExperimentMetrics,
    ExperimentOut,
    ExperimentPage,
    MetricCounts,
    ShipIn,
    StatusChange,
    VariantMetrics,
)
from abcore.experiments.layers import layer_names
from abcore.io.configs import normalise_weights
from abcore.io.csv_export import ExportError, iter_csv
from abcore.store.tables import Experiment, ExperimentStatus

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])

Ref = Annotated[str, "experiment id or name"]

# PUT .../status: the lifecycle action that reaches the target status (abcore.experiments.lifecycle refuses, with
# the reason, when the current status does not allow it); "running" from paused is a resume.
_ACTION_FOR = {"running": "start", "paused": "pause", "completed": "stop", "cancelled": "cancel"}


def experiment_out(session: Any, exp: Experiment) -> dict[str, Any]:
    """The experiment row (every column) with its variants, winner name and allowed actions."""
    assert exp.id is not None
    variants = ex.get_variants(session=session, experiment_id=exp.id)
    data = exp.model_dump()
    data["variants"] = [{**v.model_dump(exclude={"experiment_id"}), "weight": v.allocation_pct / 100.0} for v in variants]
    data["winner"] = next((v.name for v in variants if v.id == exp.winner_variant_id), None)
    data["allowed_actions"] = ex.allowed_actions(exp.status)
    data["layer"], data["holdout_layers"] = layer_names(session, exp)  # names, as ExperimentCreate takes them
    return data


def to_create(body: ExperimentIn, actor: str) -> ex.ExperimentCreate:
    """``ExperimentCreate`` from the API body: relative weights become percents summing to exactly 100."""
    problems: list[str] = []
    with_weight = [v.weight is not None for v in body.variants]
    with_pct = [v.allocation_pct is not None for v in body.variants]
    percents: list[float] = []
    if body.variants and all(with_weight) and not any(with_pct):
        try:
            percents = normalise_weights([float(v.weight) for v in body.variants])  # type: ignore[arg-type]
        except ExportError as exc:
            problems.append(f"Variant weights: {exc}.")
    elif body.variants and all(with_pct) and not any(with_weight):
        percents = [float(v.allocation_pct) for v in body.variants]  # type: ignore[arg-type]
    elif body.variants:
        problems.append("Give every variant either a relative 'weight' or an 'allocation_pct' (percent), not a mix.")
    if problems:
        raise ex.ExperimentError("The experiment cannot be saved: " + " ".join(problems), problems)
    fields = body.model_dump(exclude={"variants"})
    fields["created_by"] = fields.get("created_by") or actor
    variants = [
        ex.VariantCreate(**{**v.model_dump(exclude={"weight", "allocation_pct"}), "allocation_pct": pct})
        for v, pct in zip(body.variants, percents, strict=False)
    ]
    return ex.ExperimentCreate(**fields, variants=variants)


@router.post(
    "",
    status_code=201,
    response_model=ExperimentOut,
    responses=responses(401, 403, 413, 422, 429),
    summary="Create a draft experiment",
)
def create(body: ExperimentIn, key: Editor, session: SessionDep) -> dict[str, Any]:
    """The quick-start body (``variants`` with relative ``weight`` and JSON ``config``) or ``ExperimentCreate``'s
    (``allocation_pct``); 422 lists every problem."""
    exp = ex.create_experiment(session=session, data=to_create(body, key.name), actor=key.name)
    return experiment_out(session, exp)


@router.get("", response_model=ExperimentPage, responses=responses(401, 403, 422, 429), summary="List experiments")
def list_all(
    key: Reader,
    session: SessionDep,
    status: Literal["draft", "running", "paused", "completed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    include_archived: bool = False,
) -> dict[str, Any]:
    """Newest first, optionally only one status; ``limit``/``offset`` paginate, ``total`` counts all matches.

    Archived experiments (``abcore archive``) are left out unless ``include_archived=true``."""
    found = ex.list_experiments(session=session, status=status, include_archived=include_archived)
    return {
        "items": [experiment_out(session, e) for e in found[offset : offset + limit]],
        "total": len(found),
        "limit": limit,
        "offset": offset,
    }


@router.get("/{ref}", response_model=ExperimentOut, responses=responses(401, 403, 404, 429), summary="One experiment")
def get_one(ref: Ref, key: Reader, session: SessionDep) -> dict[str, Any]:
    """The experiment with this id or name."""
    return experiment_out(session, ex.get_experiment(session=session, ref=ref))


@router.put(
    "/{ref}/status",
    response_model=ExperimentOut,
    responses=responses(401, 403, 404, 409, 413, 422, 429),
    summary="Change the lifecycle status",
)
def set_status(ref: Ref, body: StatusChange, key: Editor, session: SessionDep, state: StateDep) -> dict[str, Any]:
    """running (start a draft / resume a paused one), paused, completed (stop), cancelled.

    Asking for the status the experiment already has changes nothing (200); a transition the
    lifecycle does not allow is 409 with the reason, and so is starting a draft without a current
    approval when the store requires approvals (``abcore settings require-approval on``).
    """
    exp = ex.get_experiment(session=session, ref=ref)
    if exp.status == body.status:
        return experiment_out(session, exp)
    action = "resume" if body.status == "running" and exp.status == ExperimentStatus.PAUSED else _ACTION_FOR[body.status]
    exp = getattr(ex, f"{action}_experiment")(session=session, ref=exp.id, actor=key.name)
    state.assigner.refresh()  # this worker assigns by the new status at once (others within cache_ttl)
    return experiment_out(session, exp)


@router.post(
    "/{ref}/ship",
    response_model=ExperimentOut,
    responses=responses(401, 403, 404, 409, 413, 422, 429),
    summary="Ship a winner: serve a variant to a share of users",
)
def ship(ref: Ref, body: ShipIn, key: Editor, session: SessionDep, state: StateDep) -> dict[str, Any]:
    """Serve ``variant`` to ``rollout_pct`` % of users. The experiment must be completed (409 otherwise),
    unless ``stop`` is true: then a running or paused experiment is stopped and shipped in one transaction,
    after every check passed (an unknown variant is 422 and the experiment keeps running)."""
    exp = ex.ship_winner(session=session, ref=ref, variant=body.variant, rollout_pct=body.rollout_pct,
                         actor=key.name, stop=body.stop)
    state.assigner.refresh()
    return experiment_out(session, exp)


def _metric_list(exp: Experiment, observed: list[str]) -> list[str]:
    wanted = [exp.primary_metric, *exp.secondary_metrics, *exp.guardrail_metrics, *observed]
    return list(dict.fromkeys(m for m in wanted if m))


@router.get(
    "/{ref}/metrics",
    response_model=ExperimentMetrics,
    responses=responses(401, 403, 404, 429),
    summary="Per-variant exposures, analysed users and per-metric event counts",
)
def metrics(ref: Ref, key: Reader, session: SessionDep, state: StateDep) -> dict[str, Any]:
    """Plain counts since the experiment started, over the users and windows the analysis counts.

    Per variant: ``assigned`` users (stored assignments), ``exposures`` (exposure events of assigned users
    since the start), ``unique_users`` (the analysis population: assigned users with a first exposure since
    the start; the ``users`` of ``/results``), and per metric (the experiment's and every metric seen) over
    the qualifying events (at or after the user's first exposure + the definition's delay, inside its
    window, as in the analysis): ``count`` events, ``users`` with one, ``converted`` users with a value
    >= 1 (a bare event counts as 1), ``conversion_rate`` = converted / unique_users, ``sum`` of the values
    (uncapped) and ``mean`` = sum / unique_users (None without users).
    """
    state.assigner.flush()  # this worker's buffered events are visible to its own reads
    exp = ex.get_experiment(session=session, ref=ref)
    assert exp.id is not None
    start = overview.as_utc(exp.started_at)
    variants = ex.get_variants(session=session, experiment_id=exp.id)
    assigned = overview.participants(session=session, experiment_id=exp.id)
    names = _metric_list(exp, overview.metric_names(session=session, experiment_id=exp.id))
    found = metric_counts(session=session, experiment_id=exp.id, metrics=names, start=start)
    exposures = overview.exposure_counts(session=session, experiment_id=exp.id, start=start)
    out = []
    for v in variants:
        assert v.id is not None
        n = found.users.get(v.id, 0)
        conversions = {}
        for m in names:
            c = found.metrics.get((v.id, m))
            total, converted = (c.sum, c.converted) if c else (0.0, 0)
            conversions[m] = MetricCounts(
                count=c.events if c else 0,
                users=c.users if c else 0,
                converted=converted,
                conversion_rate=converted / n if n else None,
                sum=total,
                mean=total / n if n else None,
            )
        out.append(
            VariantMetrics(
                variant_id=v.id,
                variant=v.name,
                is_control=v.is_control,
                assigned=assigned.get(v.id, 0),
                exposures=exposures.get(v.id, 0),
                unique_users=n,
                conversions=conversions,
            )
        )
    return {"experiment_id": exp.id, "experiment": exp.name, "status": exp.status, "start": start, "variants": out}


def _analysis_options(
    method: Literal["frequentist", "sequential", "bayesian"],
    correction: Literal["holm", "bonferroni", "fdr_bh", "none"],
    alpha: float | None,
    cuped: bool,
    start: datetime | None,
    end: datetime | None,
    segment: str | None,
) -> dict[str, Any]:
    options: dict[str, Any] = {"method": method, "correction": correction, "cuped": cuped}
    for name, value in (("alpha", alpha), ("start", start), ("end", end), ("segment", segment or None)):
        if value is not None:
            options[name] = value
    return options


Method = Annotated[Literal["frequentist", "sequential", "bayesian"], Query()]
Correction = Annotated[Literal["holm", "bonferroni", "fdr_bh", "none"], Query()]
Alpha = Annotated[float | None, Query(gt=0, lt=1, description="default: 1 - the success confidence, else 0.05")]
Segment = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="assignment attribute")]


@router.get(
    "/{ref}/results",
    responses=responses(401, 403, 404, 422, 429),
    summary="The analysis (analyze(...).to_dict()), same options as the Results page",
)
def results(
    ref: Ref,
    key: Reader,
    session: SessionDep,
    state: StateDep,
    method: Method = "frequentist",
    correction: Correction = "holm",
    alpha: Alpha = None,
    cuped: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
    segment: Segment = None,
    percentiles: bool = True,
    daily: bool = True,
    exposure_days: bool = True,
    differential: bool = True,
) -> dict[str, Any]:
    """Tests per metric and treatment, SRM and health checks, the verdict, daily series and percentiles, the
    effect by days since first exposure with the novelty test, and the differential impact scan."""
    from abcore.analysis.pipeline import analyze

    state.assigner.flush()
    exp = ex.get_experiment(session=session, ref=ref)
    options = _analysis_options(method, correction, alpha, cuped, start, end, segment)
    try:
        return analyze(exp.id, session=session, percentiles=percentiles, daily=daily,  # type: ignore[arg-type]
                       exposure_days=exposure_days, differential=differential, **options).to_dict()
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ex.ExperimentError):
            raise
        raise HTTPException(422, str(exc)) from None


@router.get(
    "/{ref}/export",
    response_class=StreamingResponse,
    responses={**responses(401, 403, 404, 422, 429), 200: {"content": {"text/csv": {}}, "description": "CSV"}},
    summary="Stream results, assignments or events as CSV",
)
def export(
    ref: Ref,
    key: Reader,
    session: SessionDep,
    state: StateDep,
    what: Literal["results", "assignments", "events"],
    method: Method = "frequentist",
    correction: Correction = "holm",
    alpha: Alpha = None,
    cuped: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
) -> StreamingResponse:
    """The same CSV as the dashboard's downloads and ``abcore export`` (header row, ISO-8601 UTC times),
    streamed from the database in chunks."""
    state.assigner.flush()
    exp = ex.get_experiment(session=session, ref=ref)  # 404 before the first byte
    options = _analysis_options(method, correction, alpha, cuped, start, end, None) if what == "results" else None
    chunks = iter_csv(experiment=exp.id, what=what, engine=state.engine, analyze_kwargs=options)  # type: ignore[arg-type]
    filename = f"{exp.id}-{what}.csv"
    return StreamingResponse(
        chunks, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
