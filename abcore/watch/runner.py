"""The watcher: automated stopping rules, result snapshots and alerts (webhooks).

One **pass** (:func:`run_pass`, ``abcore watch --once``) does, for every running experiment:

1. analyse it with the sequential (always-valid) method -- whatever the results page shows -- with a
   fixed planned sample size (:func:`planned_users_per_variant`), so looking after every pass keeps the
   error rate at ``alpha``;
2. store a **snapshot** (``ab_result_snapshots``: ``Results.to_dict()``, time, method, engine ``store``);
3. evaluate the experiment's ``auto_stop`` rules with the pure :func:`abcore.watch.rules.decide` and, for every rule that
   fires for the first time, insert an **alert** row (unique per experiment and rule) and apply the action
   through the lifecycle functions (``pause_experiment`` / ``stop_experiment``, actor ``watch``, the reason
   in the audit log) in the same transaction;

then it posts every pending alert to the webhooks (``$ABCORE_WEBHOOK_URLS`` and the dashboard's
``ab_webhooks``), with retries and backoff (:mod:`abcore.watch.webhooks`; the stored snapshots and
alerts are read back through :mod:`abcore.watch.snapshots`). :func:`run_forever`
(``abcore watch --every SECONDS``) repeats passes; a failing store is logged and retried on the next pass.

Two watchers at once act once: the unique ``(experiment_id, rule)`` constraint on ``ab_alerts`` lets one
transaction win, the lifecycle change is a compare-and-set on the status, and a sender takes a lease
(``claimed_until``) on an alert before posting it.

The rules themselves (pure) are in :mod:`abcore.watch.rules`; outcomes come from the judge,
:mod:`abcore.analysis.verdict`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from abcore.analysis.verdict import primary_outcome
from abcore.store.tables import Alert, Experiment, ExperimentStatus, ResultSnapshot
from abcore.watch.heartbeat import record_pass
from abcore.watch.report import PassReport
from abcore.watch.rules import (
    Decision,
    decide,
    experiment_directions,
    observation_from,
    planned_users_per_variant,
)
from abcore.watch.snapshots import aware_utc
from abcore.watch.webhooks import WatchSettings, deliver_pending, webhook_payload, webhook_targets

__all__ = ["ACTOR", "alert_line", "run_forever", "run_pass"]

log = logging.getLogger("abcore.watch.runner")

ACTOR = "watch"
METHOD = "sequential"
ENGINE = "store"


# --------------------------------------------------------------------------- one pass


def run_pass(engine: Engine, *, settings: WatchSettings | None = None, every: float | None = None) -> PassReport:
    """One evaluation pass over the running experiments, then the webhook deliveries, then its time in the
    store (:func:`abcore.watch.heartbeat.record_pass`, with ``every``: the interval of the loop, None for a
    single pass) so every page can show when the watcher last ran.

    Never raises for a store or network problem: it logs it, records it in the report and leaves the
    work for the next pass (snapshots are per pass; alerts stay pending until delivered).
    """
    report = _pass(engine, settings or WatchSettings.from_env())
    record_pass(engine, every=every, experiments=report.experiments, errors=len(report.errors))
    return report


def _pass(engine: Engine, settings: WatchSettings) -> PassReport:
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
        if ids:
            _watch_interactions(engine, settings, report, bool(targets))
    except Exception as exc:
        log.error("watch: interaction scan: %s", _short(exc))
        report.errors.append(f"interactions: {_short(exc)}")
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
        rules = exp.auto_stop or {}
        # The exposure-day and segment scans cost a query each: only when a rule reads them.
        results = analyze(exp, session=session, method=METHOD, percentiles=False, daily=False,
                          planned_n=planned_users_per_variant(exp, n_variants),
                          exposure_days=rules.get("novelty", "off") != "off",
                          differential=rules.get("differential", "off") != "off")
        session.rollback()  # end the read transaction before writing (SQLite: no stale snapshot)
        observation = observation_from(
            days_run=results.days_run,
            variant_users=[(v.name, v.users) for v in results.variants],
            srm_p_value=results.srm.p_value,
            srm_mismatch=results.srm.mismatch,
            metric_results=results.metrics,
            primary_metric=exp.primary_metric,
            directions=experiment_directions(exp),
            differential_cells=results.differential_impact.cells if results.differential_impact else (),
        )
        outcome, _ = primary_outcome(observation.metrics, observation.primary_metric)
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


def _watch_interactions(engine: Engine, settings: WatchSettings, report: PassReport, has_targets: bool) -> None:
    """Alert both experiments of every pair the interaction scan flags (:mod:`abcore.analysis.interactions`),
    once per (experiment, other experiment, test, metric)."""
    from abcore.analysis.interactions import interaction_scan
    from abcore.experiments.records import get_experiment

    with Session(engine, expire_on_commit=False) as session:
        findings = [f for f in interaction_scan(session=session) if f.flagged]
        session.rollback()
        for f in findings:
            what = "assignment dependence" if f.test == "assignment" else f"effect interaction on {f.metric}"
            for mine, other in ((f.experiment, f.other), (f.other, f.experiment)):
                exp = get_experiment(session=session, ref=mine)
                key = f"interaction:{other}:{f.metric or 'assignment'}"[:250]
                decision = Decision(rule=key, kind="interaction", action="alert", metric=f.metric,
                                    reason=f"{what} with {other!r} (BH-adjusted p = {f.adjusted_p:.3g}, "
                                           f"{f.users_in_both:,} users in both)",
                                    numbers={"p_value": f.p_value, "adjusted_p": f.adjusted_p, "estimate": f.estimate})
                created, _ = _fire(session, exp, decision, settings, has_targets, allow_action=False)
                report.alerts += int(created)


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
            report = run_pass(engine, settings=settings, every=every)
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


# --------------------------------------------------------------------------- dashboard helpers (pure)

def alert_line(alert: Alert) -> str:
    """A one-line description of an alert for the dashboard."""
    when = aware_utc(alert.created_at).strftime("%Y-%m-%d %H:%M UTC")
    did = {"pause": "paused", "stop": "stopped"}.get(alert.action)
    action = f"{did} by the watcher" if did and alert.action_taken else ("alert" if alert.action == "alert"
                                                                        else f"{alert.action} not applied")
    delivery = {"delivered": "webhook delivered", "pending": "webhook pending", "failed": "webhook failed",
                "no_target": "no webhook configured"}.get(alert.delivery, alert.delivery)
    return f"{when} · **{alert.rule}** · {action} · {delivery}: {alert.message}"
