"""The watcher: automated stopping rules, result snapshots and alerts (webhooks).

One **pass** (:func:`run_pass`, ``abcore watch --once``) does, for every running experiment:

1. analyse it with the sequential (always-valid) method -- whatever the results page shows -- with a
   fixed planned sample size (:func:`planned_users_per_variant`), so looking after every pass keeps the
   error rate at ``alpha``;
2. store a **snapshot** (``ab_result_snapshots``: ``Results.to_dict()``, time, method, engine ``store``);
3. evaluate the experiment's ``auto_stop`` rules with the pure :func:`decide` and, for every rule that
   fires for the first time, insert an **alert** row (unique per experiment and rule) and apply the action
   through the lifecycle functions (``pause_experiment`` / ``stop_experiment``, actor ``watch``, the reason
   in the audit log) in the same transaction;

then it posts every pending alert to the webhooks (``$ABCORE_WEBHOOK_URLS`` and the dashboard's
``ab_webhooks``), with retries and backoff. :func:`run_forever` (``abcore watch --every SECONDS``) repeats
passes; a failing store is logged and retried on the next pass.

Two watchers at once act once: the unique ``(experiment_id, rule)`` constraint on ``ab_alerts`` lets one
transaction win, the lifecycle change is a compare-and-set on the status, and a sender takes a lease
(``claimed_until``) on an alert before posting it.

Rules (``Experiment.auto_stop``, see :func:`abcore.experiments.validation.validate_auto_stop`):

* ``max_days`` / ``max_users``: stop once the experiment ran that long / exposed that many users;
* before ``min_days`` and ``min_users`` nothing below fires;
* ``srm`` (pause | alert): sample ratio mismatch (chi-square p < 0.001);
* ``guardrails`` (pause | stop | alert): a guardrail metric significantly worse in its bad direction;
* ``success`` (stop | alert): the primary metric reached a decision (significantly better or worse).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from abcore.store.tables import Alert, AuditLog, Experiment, ExperimentStatus, ResultSnapshot, Webhook, utcnow

__all__ = [
    "ACTOR",
    "Decision",
    "MetricOutcome",
    "Observation",
    "PassReport",
    "WatchSettings",
    "add_webhook",
    "decide",
    "deliver_pending",
    "evaluate",
    "experiment_directions",
    "latest_snapshot",
    "list_alerts",
    "list_webhooks",
    "metric_outcome",
    "observation_from",
    "planned_users_per_variant",
    "remove_webhook",
    "run_forever",
    "run_pass",
    "snapshot_history",
    "webhook_payload",
]

log = logging.getLogger("abcore.watch.runner")

ACTOR = "watch"
METHOD = "sequential"
ENGINE = "store"
#: Planned users per variant (the sequential test's tuning parameter) when the experiment states none.
DEFAULT_PLANNED_USERS = 10_000
_SEVERITY = {"stop": 3, "pause": 2, "alert": 1}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class WatchSettings:
    """How the watcher delivers alerts. :meth:`from_env` reads the ``ABCORE_*`` variables.

    ``retries`` attempts per URL within one pass, waiting ``backoff * 2**k`` seconds between them;
    an alert still undelivered is retried on a later pass, not before ``retry_after * 2**(passes-1)``
    seconds (capped at one hour), and marked ``failed`` after ``max_attempts`` attempts in all.
    """

    webhook_urls: tuple[str, ...] = ()
    dashboard_url: str = "http://localhost:8501"
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 5.0
    retry_after: float = 30.0
    max_attempts: int = 30
    lease_seconds: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WatchSettings:
        """Settings from ``ABCORE_WEBHOOK_URLS`` (comma-separated), ``ABCORE_DASHBOARD_URL``,
        ``ABCORE_WEBHOOK_RETRIES``, ``ABCORE_WEBHOOK_BACKOFF``, ``ABCORE_WEBHOOK_TIMEOUT`` and
        ``ABCORE_WEBHOOK_RETRY_AFTER``; bad numbers raise ValueError naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "webhook_urls": tuple(u.strip() for u in env.get("ABCORE_WEBHOOK_URLS", "").split(",") if u.strip()),
        }
        if env.get("ABCORE_DASHBOARD_URL", "").strip():
            values["dashboard_url"] = env["ABCORE_DASHBOARD_URL"].strip().rstrip("/")
        for name, key, kind in (
            ("ABCORE_WEBHOOK_RETRIES", "retries", int),
            ("ABCORE_WEBHOOK_BACKOFF", "backoff", float),
            ("ABCORE_WEBHOOK_TIMEOUT", "timeout", float),
            ("ABCORE_WEBHOOK_RETRY_AFTER", "retry_after", float),
        ):
            raw = env.get(name, "").strip()
            if raw:
                try:
                    number = kind(raw)
                except ValueError:
                    raise ValueError(f"{name} must be a number, got {raw!r}") from None
                if number < 0 or (key == "retries" and number < 1):
                    raise ValueError(f"{name} must be positive, got {raw!r}")
                values[key] = number
        bad = [u for u in values["webhook_urls"] if not _valid_url(u)]
        if bad:
            raise ValueError(f"ABCORE_WEBHOOK_URLS holds invalid URL(s): {', '.join(bad)} (need http:// or https://)")
        values.update(overrides)
        return cls(**values)


def _valid_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


# --------------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class MetricOutcome:
    """One metric x treatment as the rules see it."""

    metric: str
    role: str
    variant: str
    outcome: str  # better | worse | inconclusive
    control_value: float
    value: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    p_value: float  # always-valid, adjusted for multiple comparisons
    users: int
    control_users: int


@dataclass(frozen=True)
class Observation:
    """What one pass knows about one experiment: duration, users, SRM and the metric outcomes."""

    days_run: float
    users: int
    srm_p_value: float
    srm_mismatch: bool
    primary_metric: str
    metrics: tuple[MetricOutcome, ...]
    variant_users: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Decision:
    """A rule that fires: ``rule`` is the dedupe key, ``action`` pause | stop | alert."""

    rule: str
    kind: str  # guardrails | success | srm | max_days | max_users
    action: str
    reason: str
    metric: str | None = None
    variant: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


def metric_outcome(result: Any, directions: Mapping[str, str] | None = None) -> str:
    """``"better"``, ``"worse"`` or ``"inconclusive"`` for one metric result (treatment vs control).

    Uses ``result.outcome`` when the result carries one (metric definitions with a direction).
    Otherwise today's semantics: not significant -> inconclusive; a significant change in the metric's
    good direction -> better, the other way -> worse. The good direction is ``directions[metric]``
    when given, else "decrease" for guardrails (latency, errors, cost must not increase) and
    "increase" for primary and secondary metrics.
    """
    outcome = getattr(result, "outcome", None)
    if outcome in ("better", "worse", "inconclusive"):
        return str(outcome)
    diff = float(result.test.diff)
    if not result.significant or not math.isfinite(diff) or diff == 0:
        return "inconclusive"
    good = (directions or {}).get(result.metric) or ("decrease" if result.role == "guardrail" else "increase")
    return "better" if (diff > 0) == (good == "increase") else "worse"


def experiment_directions(experiment: Experiment) -> dict[str, str]:
    """The good direction per metric from today's success criteria (the success metric's ``direction``,
    ``guardrail_directions``); metrics not named here follow :func:`metric_outcome`'s defaults."""
    criteria = experiment.success_criteria or {}
    out: dict[str, str] = {}
    for metric, direction in (criteria.get("guardrail_directions") or {}).items():
        if direction in ("increase", "decrease"):
            out[str(metric)] = direction
    metric = criteria.get("metric") or experiment.primary_metric
    if metric and criteria.get("direction") in ("increase", "decrease"):
        out[str(metric)] = criteria["direction"]
    return out


def planned_users_per_variant(experiment: Experiment, n_variants: int) -> float:
    """The fixed planned sample size per variant the watcher's sequential test is tuned for.

    ``min_samples_per_variant`` when set, else ``max_users`` of the rules split over the variants, else
    :data:`DEFAULT_PLANNED_USERS`. It never depends on the data seen so far, so the confidence sequence
    stays valid across passes (any value is valid; it only decides where the test is most sensitive).
    """
    if experiment.min_samples_per_variant:
        return float(experiment.min_samples_per_variant)
    max_users = (experiment.auto_stop or {}).get("max_users")
    if max_users:
        return max(float(max_users) / max(n_variants, 1), 1.0)
    return float(DEFAULT_PLANNED_USERS)


def observation_from(
    *,
    days_run: float,
    variant_users: Sequence[tuple[str, int]],
    srm_p_value: float,
    srm_mismatch: bool,
    metric_results: Sequence[Any],
    primary_metric: str,
    directions: Mapping[str, str] | None = None,
) -> Observation:
    """Build the :class:`Observation` from per-variant users, the SRM test and ``MetricResult`` objects."""
    metrics = tuple(
        MetricOutcome(
            metric=r.metric,
            role=r.role,
            variant=r.variant,
            outcome=metric_outcome(r, directions),
            control_value=float(r.control_value),
            value=float(r.value),
            lift=float(r.test.lift),
            lift_ci_low=float(r.test.lift_ci_low),
            lift_ci_high=float(r.test.lift_ci_high),
            p_value=float(r.p_value_adjusted),
            users=int(r.users),
            control_users=int(r.control_users),
        )
        for r in metric_results
    )
    return Observation(
        days_run=float(days_run),
        users=int(sum(n for _, n in variant_users)),
        srm_p_value=float(srm_p_value),
        srm_mismatch=bool(srm_mismatch),
        primary_metric=primary_metric,
        metrics=metrics,
        variant_users=tuple((str(name), int(n)) for name, n in variant_users),
    )


def _pct(x: float) -> str:
    return f"{x * 100:+.1f} %" if math.isfinite(x) else "n/a"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _numbers(m: MetricOutcome) -> dict[str, Any]:
    def clean(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {
        "control_value": clean(m.control_value),
        "value": clean(m.value),
        "lift": clean(m.lift),
        "lift_ci_low": clean(m.lift_ci_low),
        "lift_ci_high": clean(m.lift_ci_high),
        "p_value": clean(m.p_value),
        "users": m.users,
        "control_users": m.control_users,
    }


def _metric_text(m: MetricOutcome) -> str:
    return (f"{m.variant} {m.metric} {_pct(m.lift)} vs control (always-valid CI {_pct(m.lift_ci_low)} to "
            f"{_pct(m.lift_ci_high)}, adjusted p {_p(m.p_value)})")


def primary_outcome(observation: Observation) -> tuple[str, MetricOutcome | None]:
    """The primary metric's decision: "better" (the treatment with the largest lift among those better),
    else "worse" (any treatment worse), else "inconclusive" -- with the metric outcome it rests on."""
    primary = [m for m in observation.metrics if m.metric == observation.primary_metric]
    better = [m for m in primary if m.outcome == "better"]
    if better:
        return "better", max(better, key=lambda m: abs(m.lift) if math.isfinite(m.lift) else 0.0)
    worse = [m for m in primary if m.outcome == "worse"]
    if worse:
        return "worse", worse[0]
    return "inconclusive", primary[0] if primary else None


def decide(rules: Mapping[str, Any], observation: Observation) -> list[Decision]:
    """Every rule of ``rules`` (a normalised ``auto_stop``) that fires on ``observation``, strongest first.

    Pure: no store, no clock. ``max_days`` / ``max_users`` always apply; the significance-based rules
    (``srm``, ``guardrails``, ``success``) only once ``min_days`` and ``min_users`` are both reached.
    The guardrail rule fires once per guardrail metric (any treatment worse), the success rule once for
    the primary metric (better or worse).
    """
    if not rules:
        return []
    out: list[Decision] = []
    obs = observation
    max_days, max_users = rules.get("max_days"), rules.get("max_users")
    if max_days is not None and obs.days_run >= float(max_days):
        out.append(Decision("max_days", "max_days", "stop",
                            f"Ran {obs.days_run:.1f} days, the maximum is {float(max_days):g}.",
                            numbers={"days_run": round(obs.days_run, 3), "max_days": max_days}))
    if max_users is not None and obs.users >= int(max_users):
        out.append(Decision("max_users", "max_users", "stop",
                            f"{obs.users:,} users exposed, the maximum is {int(max_users):,}.",
                            numbers={"users": obs.users, "max_users": max_users}))
    ready = obs.days_run >= float(rules.get("min_days") or 0) and obs.users >= int(rules.get("min_users") or 0)
    if ready:
        srm = rules.get("srm", "off")
        if srm != "off" and obs.srm_mismatch:
            split = ", ".join(f"{name} {n:,}" for name, n in obs.variant_users)
            out.append(Decision("srm", "srm", srm,
                                f"Sample ratio mismatch (chi-square p {obs.srm_p_value:.2g}): {split}.",
                                numbers={"p_value": obs.srm_p_value, "users": dict(obs.variant_users)}))
        guard = rules.get("guardrails", "off")
        if guard != "off":
            seen: set[str] = set()
            for m in obs.metrics:
                if m.role == "guardrail" and m.outcome == "worse" and m.metric not in seen:
                    seen.add(m.metric)
                    out.append(Decision(f"guardrail:{m.metric}", "guardrails", guard,
                                        f"Guardrail {m.metric} got significantly worse: {_metric_text(m)}.",
                                        metric=m.metric, variant=m.variant, numbers=_numbers(m)))
        success = rules.get("success", "off")
        outcome, m = primary_outcome(obs)
        if success != "off" and outcome != "inconclusive" and m is not None:
            word = "better" if outcome == "better" else "worse"
            out.append(Decision(f"success:{m.metric}", "success", success,
                                f"Primary metric {m.metric} reached a decision ({word}): {_metric_text(m)}.",
                                metric=m.metric, variant=m.variant, numbers={**_numbers(m), "outcome": outcome}))
    out.sort(key=lambda d: -_SEVERITY[d.action])
    return out


def evaluate(
    rules: Mapping[str, Any],
    *,
    days_run: float,
    variant_users: Sequence[tuple[str, int]],
    srm_p_value: float,
    srm_mismatch: bool,
    metric_results: Sequence[Any],
    primary_metric: str,
    directions: Mapping[str, str] | None = None,
) -> list[Decision]:
    """:func:`decide` on :func:`observation_from` -- the one decision step the watcher (and its
    calibration simulation) runs."""
    return decide(rules, observation_from(
        days_run=days_run, variant_users=variant_users, srm_p_value=srm_p_value, srm_mismatch=srm_mismatch,
        metric_results=metric_results, primary_metric=primary_metric, directions=directions,
    ))


# --------------------------------------------------------------------------- payload


def results_link(settings: WatchSettings, experiment_id: int) -> str:
    """The results page of an experiment on the dashboard."""
    return f"{settings.dashboard_url.rstrip('/')}/results?experiment={experiment_id}"


def webhook_payload(experiment: Experiment, decision: Decision, *, action_taken: bool, status: str,
                    settings: WatchSettings, note: str = "") -> dict[str, Any]:
    """The JSON posted for an alert: Slack-compatible (``text``) plus structured fields for generic receivers."""
    link = results_link(settings, int(experiment.id))  # type: ignore[arg-type]
    verb = {"pause": "paused", "stop": "stopped"}.get(decision.action)
    did = f"abcore {verb} the experiment." if verb and action_taken else (
        f"Action {decision.action} not applied{': ' + note if note else ''}." if verb else "Alert only, no action taken.")
    text = f":rotating_light: [{experiment.name}] {decision.reason} {did} <{link}|Results>"
    return {
        "text": text,
        "experiment": {"id": experiment.id, "name": experiment.name, "status": status},
        "rule": decision.kind,
        "rule_key": decision.rule,
        "action": decision.action,
        "action_taken": action_taken,
        "metric": decision.metric,
        "variant": decision.variant,
        "reason": decision.reason,
        "numbers": decision.numbers,
        "link": link,
        "sent_by": "abcore watch",
    }


# --------------------------------------------------------------------------- one pass


@dataclass
class PassReport:
    """What one pass did (counts) and the errors it logged; ``ok`` when there were none."""

    experiments: int = 0
    snapshots: int = 0
    alerts: int = 0
    actions: int = 0
    delivered: int = 0
    undelivered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        text = (f"watched {self.experiments} running experiment(s): {self.snapshots} snapshot(s), "
                f"{self.alerts} new alert(s), {self.actions} action(s), {self.delivered} webhook(s) delivered, "
                f"{self.undelivered} pending")
        return text + (f"; {len(self.errors)} error(s): " + " | ".join(self.errors) if self.errors else "")


def run_pass(engine: Engine, *, settings: WatchSettings | None = None) -> PassReport:
    """One evaluation pass over the running experiments, then the webhook deliveries.

    Never raises for a store or network problem: it logs it, records it in the report and leaves the
    work for the next pass (snapshots are per pass; alerts stay pending until delivered).
    """
    settings = settings or WatchSettings.from_env()
    report = PassReport()
    try:
        with Session(engine, expire_on_commit=False) as session:
            ids = list(session.exec(
                select(Experiment.id).where(Experiment.status == ExperimentStatus.RUNNING.value).order_by(Experiment.id)
            ).all())
    except Exception as exc:  # store outage: nothing to do this pass
        log.error("watch: cannot list running experiments: %s", _short(exc))
        report.errors.append(f"store: {_short(exc)}")
        return report
    report.experiments = len(ids)
    targets: tuple[str, ...] | None = None
    for experiment_id in ids:
        try:
            if targets is None:
                targets = webhook_targets(engine, settings)
            _watch_one(engine, int(experiment_id), settings, report, bool(targets))  # type: ignore[arg-type]
        except Exception as exc:
            log.error("watch: experiment %s: %s", experiment_id, _short(exc))
            report.errors.append(f"experiment {experiment_id}: {_short(exc)}")
    try:
        deliver_pending(engine, settings=settings, report=report)
    except Exception as exc:
        log.error("watch: webhook delivery: %s", _short(exc))
        report.errors.append(f"delivery: {_short(exc)}")
    return report


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


def _watch_one(engine: Engine, experiment_id: int, settings: WatchSettings, report: PassReport,
               has_targets: bool) -> None:
    from abcore.analysis.pipeline import analyze
    from abcore.experiments.records import get_experiment, get_variants

    with Session(engine, expire_on_commit=False) as session:
        exp = get_experiment(session=session, ref=experiment_id)
        if exp.status != ExperimentStatus.RUNNING.value:
            return
        n_variants = len(get_variants(session=session, experiment_id=experiment_id))
        results = analyze(exp, session=session, method=METHOD, percentiles=False, daily=False,
                          planned_n=planned_users_per_variant(exp, n_variants))
        session.rollback()  # end the read transaction before writing (SQLite: no stale snapshot)
        observation = observation_from(
            days_run=results.days_run,
            variant_users=[(v.name, v.users) for v in results.variants],
            srm_p_value=results.srm.p_value,
            srm_mismatch=results.srm.mismatch,
            metric_results=results.metrics,
            primary_metric=exp.primary_metric,
            directions=experiment_directions(exp),
        )
        outcome, _ = primary_outcome(observation)
        session.add(ResultSnapshot(experiment_id=experiment_id, computed_at=results.computed_at, method=METHOD,
                                   engine=ENGINE, primary_outcome=outcome, verdict=results.verdict.decision,
                                   results=results.to_dict()))
        session.commit()
        report.snapshots += 1
        lifecycle_done = False
        for decision in decide(exp.auto_stop or {}, observation):
            created, acted = _fire(session, exp, decision, settings, has_targets, allow_action=not lifecycle_done)
            if created:
                report.alerts += 1
                log.warning("watch: %s: %s -> %s%s", exp.name, decision.rule, decision.action,
                            " (applied)" if acted else "")
            if acted:
                report.actions += 1
                lifecycle_done = True


def _fire(session: Session, exp: Experiment, decision: Decision, settings: WatchSettings, has_targets: bool,
          *, allow_action: bool) -> tuple[bool, bool]:
    """Record ``decision`` as an alert (once per experiment and rule) and apply its action in the same
    transaction. Returns (alert created by this call, lifecycle action applied by this call)."""
    from abcore.experiments.errors import ExperimentError
    from abcore.experiments.lifecycle import pause_experiment, stop_experiment
    from abcore.experiments.records import get_experiment

    for _attempt in range(3):
        try:
            exists = session.exec(select(Alert.id).where(
                Alert.experiment_id == exp.id, Alert.rule == decision.rule)).first()
            session.rollback()
            if exists is not None:
                return False, False
            wants_action = decision.action in ("pause", "stop")
            note = "" if allow_action else "another rule already changed the experiment in this pass"
            acted = False
            if wants_action and allow_action:
                alert = _alert_row(exp, decision, settings, has_targets, action_taken=True,
                                   status="paused" if decision.action == "pause" else "completed")
                session.add(alert)
                session.flush()  # the unique (experiment, rule) constraint: a concurrent watcher fails here
                change = pause_experiment if decision.action == "pause" else stop_experiment
                try:  # commits the alert and the status change together
                    change(session=session, ref=int(exp.id), actor=ACTOR,  # type: ignore[arg-type]
                           reason=f"{decision.rule}: {decision.reason}")
                    acted = True
                except ExperimentError as exc:  # the status changed meanwhile: drop the flushed alert too
                    session.rollback()
                    note = str(exc)
                else:
                    return True, True
            current = get_experiment(session=session, ref=int(exp.id)).status  # type: ignore[arg-type]
            session.add(_alert_row(exp, decision, settings, has_targets, action_taken=False, status=current,
                                   note=note if wants_action else ""))
            session.commit()
            return True, acted
        except IntegrityError:
            session.rollback()
            return False, False  # another watcher recorded it first
        except OperationalError as exc:  # SQLite: a concurrent writer; retry shortly
            session.rollback()
            log.info("watch: retrying %s after %s", decision.rule, _short(exc))
            time.sleep(0.2)
    raise OperationalError(f"could not record alert {decision.rule}", None, Exception("store busy"))


def _alert_row(exp: Experiment, decision: Decision, settings: WatchSettings, has_targets: bool, *,
               action_taken: bool, status: str, note: str = "") -> Alert:
    payload = webhook_payload(exp, decision, action_taken=action_taken, status=status, settings=settings, note=note)
    message = decision.reason + ("" if action_taken or not note else f" (not applied: {note})")
    return Alert(experiment_id=int(exp.id), rule=decision.rule, metric=decision.metric,  # type: ignore[arg-type]
                 action=decision.action, action_taken=action_taken, message=message, payload=payload,
                 delivery="pending" if has_targets else "no_target")


# --------------------------------------------------------------------------- webhooks


def webhook_targets(engine: Engine, settings: WatchSettings) -> tuple[str, ...]:
    """Every URL alerts go to: ``settings.webhook_urls`` then the active dashboard webhooks (no duplicates)."""
    with Session(engine) as session:
        stored = session.exec(select(Webhook.url).where(col(Webhook.is_active).is_(True)).order_by(Webhook.id)).all()
    return tuple(dict.fromkeys([*settings.webhook_urls, *stored]))


def post_json(url: str, payload: Mapping[str, Any], *, timeout: float) -> tuple[bool, str]:
    """POST ``payload`` as JSON; (True, "") on a 2xx answer, else (False, what went wrong)."""
    body = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "abcore-watch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{type(exc).__name__}: {reason}"
    return (200 <= status < 300), ("" if 200 <= status < 300 else f"HTTP {status}")


def deliver_pending(engine: Engine, *, settings: WatchSettings, report: PassReport | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> PassReport:
    """Post every pending alert that is due to every target it has not reached yet.

    Each alert is leased first (compare-and-set on ``claimed_until``), so concurrent watchers never
    post it twice; each URL gets ``settings.retries`` attempts with exponential backoff.
    """
    report = report if report is not None else PassReport()
    targets = webhook_targets(engine, settings)
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        pending = list(session.exec(
            select(Alert.id, Alert.next_attempt_at).where(Alert.delivery == "pending").order_by(Alert.id)).all())
    for alert_id, next_attempt_at in pending:
        if next_attempt_at is not None and _aware(next_attempt_at) > now:
            report.undelivered += 1
            continue
        if not targets:
            report.undelivered += 1
            continue
        lease = utcnow() + timedelta(seconds=settings.lease_seconds)
        with Session(engine, expire_on_commit=False) as session:
            claimed = session.execute(
                update(Alert)
                .where(col(Alert.id) == alert_id, col(Alert.delivery) == "pending",
                       col(Alert.claimed_until).is_(None) | (col(Alert.claimed_until) < utcnow()))
                .values(claimed_until=lease)
            )
            session.commit()
            if claimed.rowcount != 1:
                continue  # another watcher is sending it
            fresh = session.get(Alert, alert_id)
            assert fresh is not None
            session.refresh(fresh)
            done = list(fresh.delivered_to or [])
            attempts = int(fresh.attempts)
            error = ""
            for url in targets:
                if url in done:
                    continue
                for k in range(settings.retries):
                    ok, error_here = post_json(url, fresh.payload, timeout=settings.timeout)
                    attempts += 1
                    if ok:
                        done.append(url)
                        break
                    error = f"{url}: {error_here}"
                    log.warning("watch: webhook %s failed (%s), attempt %d", url, error_here, k + 1)
                    if k + 1 < settings.retries:
                        sleep(settings.backoff * 2**k)
            complete = all(url in done for url in targets)
            fresh.delivered_to = done
            fresh.attempts = attempts
            fresh.claimed_until = None
            if complete:
                fresh.delivery, fresh.delivered_at, fresh.last_error, fresh.next_attempt_at = "delivered", utcnow(), "", None
                report.delivered += 1
            else:
                fresh.last_error = error
                passes = max(1, attempts // max(settings.retries, 1))
                fresh.next_attempt_at = utcnow() + timedelta(seconds=min(settings.retry_after * 2 ** (passes - 1), 3600))
                if attempts >= settings.max_attempts:
                    fresh.delivery = "failed"
                report.undelivered += 1
            session.add(fresh)
            session.commit()
    return report


def _aware(ts: datetime) -> datetime:
    from abcore.analysis.queries import as_utc

    return as_utc(ts)  # type: ignore[return-value]


# --------------------------------------------------------------------------- loop


def run_forever(engine: Engine, *, every: float, settings: WatchSettings | None = None,
                max_passes: int | None = None, stop: threading.Event | None = None,
                on_pass: Callable[[PassReport], None] | None = None) -> int:
    """Run :func:`run_pass` every ``every`` seconds (the service); returns the number of passes run.

    A pass that fails (store down) is logged and the next one runs on schedule. Ends after
    ``max_passes`` passes or when ``stop`` is set.
    """
    if not every > 0:
        raise ValueError(f"every must be a positive number of seconds, got {every!r}")
    stop = stop or threading.Event()
    passes = 0
    while not stop.is_set():
        began = time.monotonic()
        try:
            report = run_pass(engine, settings=settings)
        except Exception as exc:  # run_pass handles store errors; this is a last resort
            log.exception("watch: pass failed: %s", exc)
            report = PassReport(errors=[_short(exc)])
        passes += 1
        if on_pass is not None:
            on_pass(report)
        if max_passes is not None and passes >= max_passes:
            break
        stop.wait(max(0.0, every - (time.monotonic() - began)))
    return passes


# --------------------------------------------------------------------------- reading (dashboard, CLI)


def latest_snapshot(*, session: Session, experiment_id: int) -> ResultSnapshot | None:
    """The newest snapshot of an experiment, or None."""
    return session.exec(
        select(ResultSnapshot).where(ResultSnapshot.experiment_id == experiment_id)
        .order_by(col(ResultSnapshot.computed_at).desc(), col(ResultSnapshot.id).desc())
    ).first()


def snapshot_history(*, session: Session, experiment_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    """The primary metric's decision over time, oldest first: one dict per snapshot with
    ``computed_at``, ``outcome``, ``verdict`` and the first treatment's ``lift`` / CI / adjusted p."""
    rows = session.exec(
        select(ResultSnapshot).where(ResultSnapshot.experiment_id == experiment_id)
        .order_by(col(ResultSnapshot.computed_at).desc(), col(ResultSnapshot.id).desc()).limit(limit)
    ).all()
    out: list[dict[str, Any]] = []
    for snap in reversed(rows):
        primary = (snap.results or {}).get("metrics") or []
        first = next((m for m in primary if m.get("role") == "primary"), None)
        test = (first or {}).get("test") or {}
        out.append({
            "computed_at": _aware(snap.computed_at),
            "outcome": snap.primary_outcome,
            "verdict": snap.verdict,
            "metric": (first or {}).get("metric"),
            "lift": test.get("lift"),
            "lift_ci_low": test.get("lift_ci_low"),
            "lift_ci_high": test.get("lift_ci_high"),
            "p_value_adjusted": (first or {}).get("p_value_adjusted"),
        })
    return out


def list_alerts(*, session: Session, experiment_id: int | None = None, limit: int = 200) -> list[Alert]:
    """Alerts, newest first; all or one experiment's."""
    query = select(Alert).order_by(col(Alert.created_at).desc(), col(Alert.id).desc()).limit(limit)
    if experiment_id is not None:
        query = query.where(Alert.experiment_id == experiment_id)
    return list(session.exec(query).all())


def list_webhooks(*, session: Session) -> list[Webhook]:
    """The webhooks configured in the dashboard, oldest first."""
    return list(session.exec(select(Webhook).order_by(Webhook.id)).all())


def add_webhook(*, session: Session, url: str, name: str = "", actor: str = "") -> Webhook:
    """Add a webhook URL (http/https); raises ExperimentError for a bad or duplicate URL. Audited."""
    from abcore.experiments.errors import ExperimentError

    url = (url or "").strip()
    if not _valid_url(url) or len(url) > 2000:
        raise ExperimentError(f"A webhook needs an http:// or https:// URL (at most 2000 characters); got {url!r}.")
    if session.exec(select(Webhook.id).where(Webhook.url == url)).first() is not None:
        raise ExperimentError(f"The webhook {url} is already configured.")
    hook = Webhook(url=url, name=(name or "").strip()[:200], created_by=actor)
    session.add(hook)
    session.add(AuditLog(experiment_id=None, action="add_webhook", actor=actor, details={"url": url, "name": hook.name}))
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ExperimentError(f"The webhook {url} is already configured.") from exc
    session.refresh(hook)
    return hook


def remove_webhook(*, session: Session, webhook_id: int, actor: str = "") -> None:
    """Delete a dashboard webhook (unknown id: ExperimentError). Audited."""
    from abcore.experiments.errors import ExperimentError

    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise ExperimentError(f"No webhook with id {webhook_id}.")
    session.delete(hook)
    session.add(AuditLog(experiment_id=None, action="remove_webhook", actor=actor, details={"url": hook.url}))
    session.commit()


# --------------------------------------------------------------------------- dashboard helpers (pure)

RULE_LABELS: dict[str, str] = {
    "guardrails": "Guardrail significantly worse",
    "success": "Primary metric reached a decision",
    "srm": "Sample ratio mismatch",
}


def describe_rules(rules: Mapping[str, Any] | None) -> str:
    """One line describing an ``auto_stop`` mapping, e.g. "guardrails: pause · success: alert · max 14 days"."""
    if not rules:
        return "not watched (no stopping rules)"
    parts = [f"{key}: {rules.get(key, 'off')}" for key in RULE_LABELS]
    for key, unit in (("max_days", "days"), ("max_users", "users")):
        if rules.get(key) is not None:
            parts.append(f"stop at {float(rules[key]):,g} {unit}")
    minimums = [f"{float(rules[k]):,g} {u}" for k, u in (("min_days", "days"), ("min_users", "users")) if rules.get(k)]
    if minimums:
        parts.append("nothing before " + " and ".join(minimums))
    return " · ".join(parts)


def rules_from_inputs(*, enabled: bool, guardrails: str, success: str, srm: str, max_days: float,
                      max_users: int, min_days: float, min_users: int) -> dict[str, Any]:
    """The ``auto_stop`` mapping for form inputs where 0 means "no limit"; {} when not enabled."""
    if not enabled:
        return {}
    return {
        "guardrails": guardrails, "success": success, "srm": srm,
        "max_days": float(max_days) if max_days else None, "max_users": int(max_users) if max_users else None,
        "min_days": float(min_days or 0), "min_users": int(min_users or 0),
    }


def alert_line(alert: Alert) -> str:
    """A one-line description of an alert for the dashboard."""
    when = _aware(alert.created_at).strftime("%Y-%m-%d %H:%M UTC")
    did = {"pause": "paused", "stop": "stopped"}.get(alert.action)
    action = f"{did} by the watcher" if did and alert.action_taken else ("alert" if alert.action == "alert"
                                                                        else f"{alert.action} not applied")
    delivery = {"delivered": "webhook delivered", "pending": "webhook pending", "failed": "webhook failed",
                "no_target": "no webhook configured"}.get(alert.delivery, alert.delivery)
    return f"{when} · **{alert.rule}** · {action} · {delivery}: {alert.message}"
