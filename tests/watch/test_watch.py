"""The watcher end to end: one CLI pass pauses a harmful treatment, alerts once, snapshots, retries webhooks."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update
from sqlmodel import Session, col, select

from abcore.experiments.records import audit_log, get_experiment
from abcore.store.db import make_engine
from abcore.store.tables import Alert, ResultSnapshot, utcnow
from abcore.watch.runner import run_forever, run_pass
from abcore.watch.snapshots import latest_snapshot, snapshot_history
from abcore.watch.webhooks import WatchSettings, delivery_mark

from .conftest import LOCAL, Receiver, free_port, simulated_experiment, watch_cli

HARMFUL = {"error_rates": (0.10, 0.14)}  # guardrail 40 % worse in the treatment


def _alerts(session: Session, experiment_id: int) -> list[Alert]:
    session.expire_all()
    return list(session.exec(select(Alert).where(Alert.experiment_id == experiment_id)).all())


def _snapshots(session: Session, experiment_id: int) -> int:
    return len(session.exec(select(ResultSnapshot.id).where(ResultSnapshot.experiment_id == experiment_id)).all())


def test_one_cli_pass_pauses_a_harmful_treatment_and_alerts_once(db_url: str, session: Session, receiver: Receiver) -> None:
    harmful, raw = simulated_experiment(session, "harmful", seed=11, **HARMFUL)
    aa, _ = simulated_experiment(session, "aa", seed=12)

    done = watch_cli(db_url, "--once", webhook_urls=receiver.url)
    assert done.returncode == 0, done.stderr
    assert "1 action(s)" in done.stdout

    assert get_experiment(session=session, ref=harmful.id).status == "paused"
    assert get_experiment(session=session, ref=aa.id).status == "running"
    pause = [e for e in audit_log(session=session, experiment_id=harmful.id) if e.action == "pause"]
    assert len(pause) == 1 and pause[0].actor == "watch"
    assert pause[0].details["reason"].startswith("guardrail:errors: Guardrail errors got significantly worse")
    assert _alerts(session, aa.id) == []

    assert len(receiver.requests) == 1
    body = receiver.requests[0]["body"]
    assert receiver.requests[0]["content_type"] == "application/json"
    assert isinstance(body["text"], str) and "harmful" in body["text"]  # Slack's required field
    assert body["experiment"] == {"id": harmful.id, "name": "harmful", "status": "paused"}
    assert (body["rule"], body["rule_key"], body["action"], body["metric"]) == ("guardrails", "guardrail:errors", "pause", "errors")
    assert body["action_taken"] is True
    assert body["link"] == f"http://dash.example:8501/results?experiment={harmful.id}"
    # numpy on the raw per-user values: error rates and their relative lift
    control, treatment = raw["control_errors"].mean(), raw["treatment_errors"].mean()
    assert body["numbers"]["control_value"] == pytest.approx(control)
    assert body["numbers"]["value"] == pytest.approx(treatment)
    assert body["numbers"]["lift"] == pytest.approx(treatment / control - 1)
    assert body["numbers"]["p_value"] < 0.05 and body["numbers"]["lift_ci_low"] > 0

    # a snapshot per running experiment, frozen Results JSON, sequential method, store engine
    for exp in (harmful, aa):
        snap = latest_snapshot(session=session, experiment_id=exp.id)
        assert snap is not None and snap.method == "sequential" and snap.engine == "store"
        assert snap.results["experiment"] == exp.name and snap.results["method"] == "sequential"
    assert latest_snapshot(session=session, experiment_id=aa.id).primary_outcome == "inconclusive"  # type: ignore[union-attr]

    again = watch_cli(db_url, "--once", webhook_urls=receiver.url)
    assert again.returncode == 0, again.stderr
    assert len(receiver.requests) == 1  # no duplicate
    assert len(_alerts(session, harmful.id)) == 1 and _alerts(session, aa.id) == []
    assert _snapshots(session, aa.id) == 2 and _snapshots(session, harmful.id) == 1  # paused: no longer watched
    assert len(snapshot_history(session=session, experiment_id=aa.id)) == 2


def test_a_human_resume_is_not_overridden(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with Session(engine, expire_on_commit=False) as session:
        harmful, _ = simulated_experiment(session, "harmful", seed=11, **HARMFUL)
        settings = WatchSettings()
        assert run_pass(engine, settings=settings).actions == 1
        from abcore.experiments.lifecycle import resume_experiment

        resume_experiment(session=session, ref=harmful.id, actor="alice")
        report = run_pass(engine, settings=settings)
        assert report.actions == 0 and report.alerts == 0
        assert get_experiment(session=session, ref=harmful.id).status == "running"
    engine.dispose()


def test_webhook_500_then_200_is_delivered_once(sqlite_url: str) -> None:
    receiver = Receiver(statuses=[500])
    engine = make_engine(sqlite_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            harmful, _ = simulated_experiment(session, "harmful", seed=11, **HARMFUL)
            settings = WatchSettings(webhook_urls=(receiver.url,), backoff=0.01, allow=(LOCAL,))
            report = run_pass(engine, settings=settings)
            assert report.ok and report.delivered == 1
            assert [r["status"] for r in receiver.requests] == [500, 200]
            (alert,) = _alerts(session, harmful.id)
            assert (alert.delivery, alert.attempts, alert.delivered_to) == ("delivered", 2, [delivery_mark(receiver.url)])
            run_pass(engine, settings=settings)
            assert len(receiver.requests) == 2 and len(receiver.delivered) == 1
    finally:
        receiver.close()
        engine.dispose()


def test_receiver_down_pass_finishes_and_alert_is_retried_later(sqlite_url: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    engine = make_engine(sqlite_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            harmful, _ = simulated_experiment(session, "harmful", seed=11, **HARMFUL)
            settings = WatchSettings(webhook_urls=(url,), backoff=0.01, retry_after=60, allow=(LOCAL,))
            report = run_pass(engine, settings=settings)
            assert report.ok and report.actions == 1 and report.undelivered == 1 and report.delivered == 0
            assert get_experiment(session=session, ref=harmful.id).status == "paused"
            (alert,) = _alerts(session, harmful.id)
            assert alert.delivery == "pending" and alert.attempts == 3 and "Connection refused" in alert.last_error
            assert alert.next_attempt_at is not None

            receiver = Receiver(port=port)
            try:
                run_pass(engine, settings=settings)  # not due yet (backoff between passes)
                assert receiver.requests == []
                session.execute(update(Alert).where(col(Alert.id) == alert.id)
                                .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
                session.commit()
                assert run_pass(engine, settings=settings).delivered == 1
                assert len(receiver.requests) == 1 and receiver.requests[0]["body"]["rule_key"] == "guardrail:errors"
                (alert,) = _alerts(session, harmful.id)
                assert alert.delivery == "delivered" and alert.attempts == 4
                run_pass(engine, settings=settings)
                assert len(receiver.requests) == 1
            finally:
                receiver.close()
    finally:
        engine.dispose()


def test_two_watchers_started_together_act_once(db_url: str, session: Session, receiver: Receiver) -> None:
    harmful, _ = simulated_experiment(session, "harmful", seed=11, **HARMFUL)
    procs = [watch_cli(db_url, "--once", webhook_urls=receiver.url, start=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]  # type: ignore[union-attr]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err  # type: ignore[union-attr]
    pauses = [e for e in audit_log(session=session, experiment_id=harmful.id) if e.action == "pause"]
    assert len(pauses) == 1
    assert len(_alerts(session, harmful.id)) == 1
    assert len(receiver.requests) == 1


def test_store_outage_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    report = run_pass(engine, settings=WatchSettings())
    assert not report.ok and report.errors[0].startswith("store: OperationalError")
    assert "cannot list running experiments" in caplog.text
    seen: list[Any] = []
    assert run_forever(engine, every=0.01, settings=WatchSettings(), max_passes=2, on_pass=seen.append) == 2
    assert all(not r.ok for r in seen)
    engine.dispose()


def test_cli_once_exits_1_on_a_store_outage() -> None:
    done = watch_cli("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2", "--once")
    assert done.returncode == 1
    assert "store: OperationalError" in done.stdout and "Traceback" not in done.stderr


def test_cli_every_runs_passes_until_interrupted(sqlite_url: str) -> None:
    proc = watch_cli(sqlite_url, "--every", "0.2", start=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("watched 0 running experiment(s)")
        assert proc.stdout.readline().startswith("watched")  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_rejects_bad_arguments(sqlite_url: str) -> None:
    done = watch_cli(sqlite_url)
    assert done.returncode == 2 and "one of the arguments --once --every is required" in done.stderr
    done = watch_cli(sqlite_url, "--every", "-1")
    assert done.returncode == 2 and "positive number of seconds" in done.stderr
    done = watch_cli(sqlite_url, "--once", webhook_urls="ftp://example.org/hook")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: ABCORE_WEBHOOK_URLS holds invalid URL(s): ftp://example.org/hook (need http:// or https://)")


def test_snapshot_is_frozen_results_and_history_tracks_the_decision(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with Session(engine, expire_on_commit=False) as session:
        exp, raw = simulated_experiment(session, "winner", conversion_rates=(0.10, 0.16), seed=5,
                                   auto_stop={"success": "alert", "guardrails": "off", "srm": "off"})
        report = run_pass(engine, settings=WatchSettings())
        assert report.alerts == 1 and report.actions == 0
        snap = latest_snapshot(session=session, experiment_id=exp.id)
        assert snap is not None and snap.primary_outcome == "better"
        first = next(m for m in snap.results["metrics"] if m["metric"] == "conversion")
        # numpy on the raw rows: conversion rates
        assert first["control_value"] == pytest.approx(raw["control_conversion"].mean())
        assert first["value"] == pytest.approx(raw["treatment_conversion"].mean())
        (alert,) = _alerts(session, exp.id)
        assert alert.rule == "success:conversion" and alert.action == "alert" and alert.delivery == "no_target"
        history = snapshot_history(session=session, experiment_id=exp.id)
        assert [h["outcome"] for h in history] == ["better"]
        assert math.isfinite(history[0]["lift"]) and history[0]["lift"] == pytest.approx(
            raw["treatment_conversion"].mean() / raw["control_conversion"].mean() - 1)
        assert get_experiment(session=session, ref=exp.id).status == "running"
    engine.dispose()


def test_success_stop_and_max_users(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with Session(engine, expire_on_commit=False) as session:
        exp, _ = simulated_experiment(session, "aa-capped", seed=3, users_per_arm=500,
                                 auto_stop={"max_users": 1000, "guardrails": "pause"})
        report = run_pass(engine, settings=WatchSettings())
        assert report.actions == 1
        assert get_experiment(session=session, ref=exp.id).status == "completed"
        stop = next(e for e in audit_log(session=session, experiment_id=exp.id) if e.action == "stop")
        assert stop.actor == "watch" and stop.details["reason"] == "max_users: 1,000 users exposed, the maximum is 1,000."
    engine.dispose()


def test_min_users_holds_back_significance_rules(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with Session(engine, expire_on_commit=False) as session:
        exp, _ = simulated_experiment(session, "early", seed=11, auto_stop={"guardrails": "pause", "min_users": 10_000},
                                 **HARMFUL)
        report = run_pass(engine, settings=WatchSettings())
        assert report.alerts == 0 and get_experiment(session=session, ref=exp.id).status == "running"
    engine.dispose()


def test_unwatched_experiment_gets_snapshots_only(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with Session(engine, expire_on_commit=False) as session:
        exp, _ = simulated_experiment(session, "unwatched", seed=11, auto_stop={}, **HARMFUL)
        report = run_pass(engine, settings=WatchSettings())
        assert report.snapshots == 1 and report.alerts == 0
        assert get_experiment(session=session, ref=exp.id).status == "running"
        assert np.isfinite(latest_snapshot(session=session, experiment_id=exp.id).results["alpha"])  # type: ignore[union-attr]
    engine.dispose()


def test_delivered_to_keeps_no_webhook_secret_and_tells_two_hooks_on_one_host_apart(sqlite_url: str) -> None:
    """Two Slack-like webhooks on one host, their tokens in the path: the first is reached, the second answers 500.
    ``ab_alerts.delivered_to`` holds the redacted URL and a fingerprint (no token), and the retry posts only to the
    second one; an entry stored as a whole URL (by an older version) counts as reached and is rewritten as its mark."""
    receiver = Receiver(statuses=[200, 500])
    engine = make_engine(sqlite_url)
    base = f"http://127.0.0.1:{receiver.port}/services"
    first, second = f"{base}/T01/B01/token-one-secret", f"{base}/T01/B02/token-two-secret"
    try:
        with Session(engine, expire_on_commit=False) as session:
            harmful, _ = simulated_experiment(session, "harmful", seed=11, **HARMFUL)
            settings = WatchSettings(webhook_urls=(first, second), backoff=0.01, retries=1, allow=(LOCAL,))
            run_pass(engine, settings=settings)
            (alert,) = _alerts(session, harmful.id)
            assert alert.delivery == "pending"
            assert alert.delivered_to == [delivery_mark(first)]
            assert alert.delivered_to[0].startswith(f"http://127.0.0.1:{receiver.port}/… #")
            assert "secret" not in str(alert.delivered_to) and delivery_mark(first) != delivery_mark(second)
            # an older version stored the whole URL: rewrite it so, the retry must still skip the first hook
            session.execute(update(Alert).where(col(Alert.id) == alert.id).values(next_attempt_at=None,
                                                                                   delivered_to=[first]))
            session.commit()
            run_pass(engine, settings=settings)
            (alert,) = _alerts(session, harmful.id)
            assert alert.delivery == "delivered"
            assert alert.delivered_to == [delivery_mark(first), delivery_mark(second)]
            assert [r["path"] for r in receiver.requests] == ["/services/T01/B01/token-one-secret",
                                                              "/services/T01/B02/token-two-secret",
                                                              "/services/T01/B02/token-two-secret"]
    finally:
        receiver.close()
        engine.dispose()


def test_a_harmful_guardrail_with_a_small_control_rate_is_paused(sqlite_url: str) -> None:
    # 5 % -> 60 % errors with 200 users per arm: the sequential test is decisive (statsmodels
    # proportions_ztest on the raw 0/1 values: p < 1e-30), and the relative-lift interval shown with it
    # (Fieller's) excludes 0 too, so the watcher pauses the experiment.
    from statsmodels.stats.proportion import proportions_ztest

    engine = make_engine(sqlite_url)
    with Session(engine, expire_on_commit=False) as session:
        harmful, raw = simulated_experiment(session, "harmful", seed=26, error_rates=(0.05, 0.60), users_per_arm=200)
        errors = [int(raw["treatment_errors"].sum()), int(raw["control_errors"].sum())]
        assert proportions_ztest(errors, [200, 200])[1] < 1e-30
        assert run_pass(engine, settings=WatchSettings()).actions == 1
        assert get_experiment(session=session, ref=harmful.id).status == "paused"
        pause = [e for e in audit_log(session=session, experiment_id=harmful.id) if e.action == "pause"]
        assert pause[0].details["reason"].startswith("guardrail:errors")
    engine.dispose()
