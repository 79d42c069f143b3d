"""Demo data: a seeded simulation that fills an empty store with a living data set.

``make run`` loads it when the store holds no experiment yet, so a newcomer's dashboard
shows models, experiments in every status and one running experiment with thousands of
simulated users whose effects are known:

* ``ranker_two_tower_vs_als`` (running, 3 arms): ``two_tower`` raises the watch-completion
  rate by 30 % relative and watch time by about 10 % at the same latency; ``popgen`` has no
  effect on completion and is faster. Users carry ``country`` and ``platform`` attributes and a
  pre-experiment watch-time event (the CUPED covariate); a share of users leave feedback.
* ``homepage_carousel`` (paused), ``cold_start_popgen`` (completed, winner shipped),
  ``long_tail_boost`` (completed, no winner yet), ``diversity_rerank`` (draft) and
  ``broken_embeddings`` (cancelled).

Users are bucketed with :func:`abcore.assign.bucket` and :func:`abcore.assign.choose_variant`,
so ``abcore.assign`` gives every simulated user the variant stored here.
The same generator serves tests that need data with known effects.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, insert, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from abcore.assign.targeting import evaluate_targeting
from abcore.experiments.lifecycle import (
    cancel_experiment,
    create_experiment,
    pause_experiment,
    ship_winner,
    start_experiment,
    stop_experiment,
)
from abcore.experiments.ml_models import create_model, retire_model
from abcore.experiments.records import get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.metrics import MetricCreate, define_metric, resolve_specs
from abcore.store.tables import AuditLog, Experiment, ExperimentEvent, UserAssignment, utcnow

COUNTRIES = ("US", "DE", "FR", "BR", "IN")
COUNTRY_WEIGHTS = (0.35, 0.2, 0.15, 0.15, 0.15)
PLATFORMS = ("ios", "android", "web")
PLATFORM_WEIGHTS = (0.4, 0.4, 0.2)
SENTIMENTS = ("positive", "neutral", "negative")
DEMO_ACTOR = "demo"


@dataclass(frozen=True)
class ArmEffect:
    """The true behaviour of one simulated arm."""

    completion_rate: float  # probability that an exposed user completes a watch
    watch_time_mean: float  # mean minutes watched per session
    latency_ms: float  # median serving latency
    sentiment: tuple[float, float, float]  # P(positive, neutral, negative)


@dataclass(frozen=True)
class SimulatedExperiment:
    """An experiment to create and, unless it stays a draft, populate with simulated users."""

    name: str
    description: str
    hypothesis: str
    arms: tuple[tuple[str, float, str, ArmEffect], ...]  # (variant name, allocation %, model name, effect)
    status: str
    users: int
    days_ago: int  # started this many days before now
    traffic_allocation: float = 1.0
    winner: str | None = None
    rollout_pct: float = 100.0
    targeting: tuple[dict[str, Any], ...] = ()


@dataclass
class DemoSummary:
    """What :func:`load_demo_data` wrote."""

    models: int = 0
    experiments: int = 0
    assignments: int = 0
    events: int = 0
    by_experiment: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        per = ", ".join(f"{name}: {users:,} users" for name, users in self.by_experiment.items())
        return (
            f"Demo data loaded: {self.models} models, {self.experiments} experiments, "
            f"{self.assignments:,} assignments, {self.events:,} events ({per})."
        )


MODELS = (
    ("als_v1", "1.4.0", "Implicit-feedback ALS matrix factorisation (baseline ranker).", {"factors": 64, "reg": 0.01}),
    ("two_tower_v3", "3.0.2", "Two-tower neural retrieval with watch-history encoder.", {"dim": 128, "epochs": 12}),
    ("popgen_v2", "2.1.0", "Popularity by genre, recency-weighted.", {"half_life_days": 7}),
    ("lightgcn_v1", "1.0.0", "LightGCN graph ranker (retired after the embedding incident).", {"layers": 3}),
)

BASE = ArmEffect(completion_rate=0.12, watch_time_mean=22.0, latency_ms=120.0, sentiment=(0.45, 0.35, 0.20))

DEMO_EXPERIMENTS = (
    SimulatedExperiment(
        name="ranker_two_tower_vs_als",
        description="Does the two-tower retriever beat ALS on watch completion? PopGen as a cheap challenger.",
        hypothesis="Two-tower retrieval raises the watch-completion rate by at least 5 % relative.",
        arms=(
            ("control", 34.0, "als_v1", BASE),
            ("two_tower", 33.0, "two_tower_v3", ArmEffect(0.156, 24.2, 121.0, (0.52, 0.32, 0.16))),
            ("popgen", 33.0, "popgen_v2", ArmEffect(0.12, 22.0, 82.0, (0.44, 0.36, 0.20))),
        ),
        status="running",
        users=9000,
        days_ago=14,
    ),
    SimulatedExperiment(
        name="homepage_carousel",
        description="Personalised carousel order on the home page.",
        hypothesis="Ordering rows by predicted watch time increases completion.",
        arms=(
            ("control", 50.0, "als_v1", BASE),
            ("ordered_rows", 50.0, "two_tower_v3", ArmEffect(0.125, 22.5, 125.0, BASE.sentiment)),
        ),
        status="paused",
        users=900,
        days_ago=6,
        traffic_allocation=0.5,
        targeting=({"attribute": "platform", "op": "in", "value": ["ios", "android"]},),
    ),
    SimulatedExperiment(
        name="cold_start_popgen",
        description="PopGen for users with fewer than five plays.",
        hypothesis="Popular-by-genre beats ALS for cold-start users.",
        arms=(
            ("control", 50.0, "als_v1", ArmEffect(0.08, 15.0, 118.0, BASE.sentiment)),
            ("popgen", 50.0, "popgen_v2", ArmEffect(0.10, 16.5, 80.0, (0.50, 0.33, 0.17))),
        ),
        status="completed",
        users=1600,
        days_ago=30,
        winner="popgen",
        rollout_pct=100.0,
    ),
    SimulatedExperiment(
        name="long_tail_boost",
        description="Boost long-tail titles by 10 % in the final ranking.",
        hypothesis="More diverse lists keep completion flat while widening the catalogue.",
        arms=(
            ("control", 50.0, "als_v1", BASE),
            ("boost", 50.0, "als_v1", ArmEffect(0.118, 21.6, 121.0, BASE.sentiment)),
        ),
        status="completed",
        users=1200,
        days_ago=21,
    ),
    SimulatedExperiment(
        name="diversity_rerank",
        description="Maximal-marginal-relevance re-ranking on top of two-tower.",
        hypothesis="Re-ranking for diversity raises positive feedback without hurting completion.",
        arms=(
            ("control", 50.0, "two_tower_v3", BASE),
            ("mmr_0_3", 25.0, "two_tower_v3", BASE),
            ("mmr_0_6", 25.0, "two_tower_v3", BASE),
        ),
        status="draft",
        users=0,
        days_ago=0,
    ),
    SimulatedExperiment(
        name="broken_embeddings",
        description="LightGCN embeddings (cancelled: stale item index).",
        hypothesis="Graph embeddings improve recall.",
        arms=(("control", 50.0, "als_v1", BASE), ("lightgcn", 50.0, "lightgcn_v1", BASE)),
        status="cancelled",
        users=300,
        days_ago=9,
    ),
)


#: The demo's metric definitions: the serving latency is a mean per request ("Mean per event"), not a
#: per-user sum that also grows with the requests a user makes.
DEMO_METRICS: tuple[MetricCreate, ...] = (
    MetricCreate(name="latency_ms", kind="event_mean", direction="decrease",
                 description="Serving latency per request (ms)"),
)


def store_is_empty(engine: Engine) -> bool:
    """True when the store holds no experiment (the demo loader's trigger)."""
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Experiment)).one() == 0


def _progress(enabled: bool, message: str) -> None:
    if enabled:
        print(f"  {message}", file=sys.stderr, flush=True)


def load_demo_data(
    engine: Engine,
    *,
    seed: int = 7,
    scale: float = 1.0,
    progress: bool = False,
    now: datetime | None = None,
) -> DemoSummary:
    """Create the demo models and experiments and simulate their users' events.

    Deterministic for a given ``seed`` (user ids, assignments, events; only timestamps
    follow ``now``). ``scale`` multiplies the number of simulated users (tests use less).
    """
    rng = np.random.default_rng(seed)
    now = now or utcnow()
    summary = DemoSummary()
    with Session(engine, expire_on_commit=False) as session:
        model_ids: dict[str, int] = {}
        for name, version, description, config in MODELS:
            model = create_model(session=session, name=name, version=version, description=description, config=config)
            model_ids[name] = model.id  # type: ignore[assignment]
            summary.models += 1
        retire_model(session=session, model_id=model_ids["lightgcn_v1"])
        defined = resolve_specs(session=session, names=[m.name for m in DEMO_METRICS])
        for metric in DEMO_METRICS:
            if metric.name not in defined:
                define_metric(session=session, data=metric)

        for spec in DEMO_EXPERIMENTS:
            _progress(progress, f"simulating {spec.name} ...")
            users = round(spec.users * scale)
            experiment = _create(session, spec, model_ids)
            summary.experiments += 1
            if spec.status != "draft":
                assignments, events = _simulate(session, experiment, spec, users, rng, now)
                summary.assignments += assignments
                summary.events += events
                summary.by_experiment[spec.name] = assignments
                _advance(session, experiment, spec, now)
        # Fresh planner statistics: without them PostgreSQL picks nested loops over the new rows.
        session.execute(text("ANALYZE"))
        session.commit()
    return summary


def _create(session: Session, spec: SimulatedExperiment, model_ids: dict[str, int]) -> Experiment:
    primary = "watch_completion"
    return create_experiment(
        session=session,
        actor=DEMO_ACTOR,
        data=ExperimentCreate(
            name=spec.name,
            description=spec.description,
            hypothesis=spec.hypothesis,
            variants=[
                VariantCreate(
                    name=name,
                    allocation_pct=pct,
                    model_id=model_ids[model],
                    config={"model": model, "candidates": 500},
                    is_control=index == 0,
                )
                for index, (name, pct, model, _) in enumerate(spec.arms)
            ],
            traffic_allocation=spec.traffic_allocation,
            targeting=list(spec.targeting),
            primary_metric=primary,
            secondary_metrics=["watch_time_min"],
            guardrail_metrics=["latency_ms"],
            success_criteria={"metric": primary, "direction": "increase", "threshold": 0.05, "confidence": 0.95},
            min_duration_days=14,
            min_samples_per_variant=1000,
            salt=f"{spec.name}-demo",
        ),
    )


def _simulate(
    session: Session,
    experiment: Experiment,
    spec: SimulatedExperiment,
    users: int,
    rng: np.random.Generator,
    now: datetime,
) -> tuple[int, int]:
    """Assign ``users`` simulated users and write their events; returns (assignments, events)."""
    from abcore.assign import bucket, choose_variant, cumulative_allocations, traffic_bucket

    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    effects = {name: effect for name, _, _, effect in spec.arms}
    bounds = cumulative_allocations([v.allocation_pct for v in variants])
    started = now - timedelta(days=spec.days_ago)
    live = spec.status in ("running", "paused")
    window = timedelta(days=max(spec.days_ago, 1)) if live else timedelta(days=spec.days_ago * 0.8)
    end = now if live else started + window  # completed and cancelled experiments stopped at `end`

    assignment_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    countries = rng.choice(COUNTRIES, size=users, p=COUNTRY_WEIGHTS)
    platforms = rng.choice(PLATFORMS, size=users, p=PLATFORM_WEIGHTS)
    # Arrivals front-loaded (returning users come first), within the running window.
    arrival = started + window * (rng.beta(1.2, 2.0, size=users) * 0.97)
    engagement = rng.gamma(shape=2.0, scale=0.5, size=users)  # a user's latent appetite, mean 1
    for i in range(users):
        user_id = f"{spec.name[:3]}-user-{i:05d}"
        attributes = {"country": str(countries[i]), "platform": str(platforms[i])}
        # The same eligibility and bucketing as abcore.assign, so assign() agrees with the stored rows.
        if not evaluate_targeting(experiment.targeting, user_id, attributes):
            continue
        if traffic_bucket(user_id, experiment.salt) >= experiment.traffic_allocation:
            continue
        variant = variants[choose_variant(bucket(user_id, experiment.salt), bounds)]
        assigned_at = arrival[i]
        assignment_rows.append(
            {
                "user_id": user_id,
                "experiment_id": experiment.id,
                "variant_id": variant.id,
                "attributes": attributes,
                "assigned_at": assigned_at,
            }
        )
        user = _SimulatedUser(int(experiment.id), int(variant.id), user_id, i,  # type: ignore[arg-type]
                              assigned_at, float(engagement[i]))
        event_rows += _user_events(user, effects[variant.name], rng, started=started, end=end)

    for chunk_start in range(0, len(assignment_rows), 5000):
        session.execute(insert(UserAssignment), assignment_rows[chunk_start : chunk_start + 5000])
    for chunk_start in range(0, len(event_rows), 20000):
        session.execute(insert(ExperimentEvent), event_rows[chunk_start : chunk_start + 20000])
    session.commit()
    return len(assignment_rows), len(event_rows)


@dataclass(frozen=True)
class _SimulatedUser:
    """One assigned simulated user: where it is, its index in the simulation and its latent engagement."""

    experiment_id: int
    variant_id: int
    user_id: str
    index: int
    assigned_at: datetime
    engagement: float


def _user_events(user: _SimulatedUser, effect: ArmEffect, rng: np.random.Generator, *, started: datetime,
                 end: datetime) -> list[dict[str, Any]]:
    """The event rows of one user, drawn from ``rng`` in a fixed order (so a seed gives the same data):
    its assignment, a pre-experiment watch time (the CUPED covariate), sessions with exposure, latency
    and watch time, maybe a completion and maybe feedback. No event is later than ``end``."""
    rows: list[dict[str, Any]] = []

    def event(kind: str, ts: datetime, metric: str | None = None, value: float | None = None,
              request_id: str | None = None, **props: Any) -> None:
        rows.append({
            "experiment_id": user.experiment_id, "variant_id": user.variant_id, "user_id": user.user_id,
            "event_type": kind, "metric_name": metric, "value": value, "request_id": request_id,
            "properties": props, "ts": min(ts, end), "event_key": None,
        })

    assigned_at, engagement = user.assigned_at, user.engagement
    event("user_assignment", assigned_at)
    # Pre-experiment watch time of the same user (the CUPED covariate), before the start.
    event("conversion", started - timedelta(days=float(rng.uniform(1, 14))), "watch_time_min",
          round(float(rng.gamma(2.0, BASE.watch_time_mean * engagement / 2.0)), 2))
    sessions = 1 + int(rng.poisson(1.5 * engagement))
    remaining = max((end - assigned_at).total_seconds(), 60.0)
    for s in range(sessions):
        ts = assigned_at + timedelta(seconds=float(remaining * s / sessions + rng.uniform(0, 30)))
        event("exposure", ts, request_id=f"req-{user.experiment_id}-{user.index}-{s}")
        event("conversion", ts + timedelta(seconds=2), "latency_ms",
              round(float(rng.lognormal(np.log(effect.latency_ms), 0.35)), 1))
        watch = float(rng.gamma(2.0, effect.watch_time_mean * engagement / 2.0))
        event("conversion", ts + timedelta(minutes=watch), "watch_time_min", round(watch, 2))
    completion_p = min(0.95, effect.completion_rate * (0.6 + 0.4 * engagement))
    if rng.random() < completion_p:
        event("conversion", assigned_at + timedelta(minutes=float(rng.uniform(5, 120))), "watch_completion", 1.0)
    if rng.random() < 0.3:
        sentiment = SENTIMENTS[int(rng.choice(3, p=effect.sentiment))]
        event("feedback", assigned_at + timedelta(minutes=float(rng.uniform(10, 240))), "feedback", None,
              sentiment=sentiment)
    return rows


def _advance(session: Session, experiment: Experiment, spec: SimulatedExperiment, now: datetime) -> None:
    """Walk the experiment through its lifecycle, then date the start (and its audit rows) back."""
    ref = experiment.id
    assert ref is not None
    if spec.status == "draft":
        return
    start_experiment(session=session, ref=ref, actor=DEMO_ACTOR)
    if spec.status == "paused":
        pause_experiment(session=session, ref=ref, actor=DEMO_ACTOR)
    elif spec.status == "completed":
        stop_experiment(session=session, ref=ref, actor=DEMO_ACTOR)
        if spec.winner:
            ship_winner(session=session, ref=ref, variant=spec.winner, rollout_pct=spec.rollout_pct, actor=DEMO_ACTOR)
    elif spec.status == "cancelled":
        cancel_experiment(session=session, ref=ref, actor=DEMO_ACTOR)

    started = now - timedelta(days=spec.days_ago)
    stopped = started + timedelta(days=spec.days_ago * 0.8) if spec.status in ("completed", "cancelled") else None
    created = started - timedelta(days=2)
    session.execute(
        update(Experiment)
        .where(col(Experiment.id) == ref)
        .values(created_at=created, started_at=started, stopped_at=stopped)
    )
    # Date the audit trail consistently with the simulated history.
    stamps = {"create": created, "start": started}
    for action, ts in stamps.items():
        session.execute(
            update(AuditLog).where(col(AuditLog.experiment_id) == ref, col(AuditLog.action) == action).values(ts=ts)
        )
    if stopped is not None:
        session.execute(
            update(AuditLog)
            .where(col(AuditLog.experiment_id) == ref, col(AuditLog.action).in_(("stop", "cancel", "ship")))
            .values(ts=stopped)
        )
    if spec.status == "paused":
        session.execute(
            update(AuditLog)
            .where(col(AuditLog.experiment_id) == ref, col(AuditLog.action) == "pause")
            .values(ts=now - timedelta(hours=6))
        )
    session.commit()
