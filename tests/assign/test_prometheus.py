"""Prometheus metrics: counters per experiment/variant hooked into assign, caller-reported latency histogram."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from abcore.assign import Assigner
from abcore.assign import prometheus as metrics

from .conftest import new_experiment


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.REGISTRY).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(name: str, **labels: str) -> float:
    return _samples().get((name, tuple(sorted(labels.items()))), 0.0)


def test_assign_counts_requests_assignments_and_exposures(sqlite_engine: Engine) -> None:
    # v1 gets 0.01 %: none of these four users hashes into it (murmur3 is deterministic; a 0 % arm is refused)
    new_experiment(sqlite_engine, "metrics_exp", allocations=(99.99, 0.01))
    client = Assigner(sqlite_engine, timeout=2.0)
    before = {
        n: _value(n, experiment="metrics_exp", variant="v0")
        for n in ("experiment_reco_requests_total", "experiment_assignments_total", "experiment_exposures_total")
    }
    try:
        for _ in range(3):
            assert client.assign("m-user", "metrics_exp") is not None
        assert client.assign("m-user", "metrics_exp", expose=False) is not None
        client.assign_many(["m-a", "m-b"], "metrics_exp")
    finally:
        client.close()
    label = {"experiment": "metrics_exp", "variant": "v0"}
    assert _value("experiment_reco_requests_total", **label) - before["experiment_reco_requests_total"] == 6
    assert _value("experiment_assignments_total", **label) - before["experiment_assignments_total"] == 3
    assert _value("experiment_exposures_total", **label) - before["experiment_exposures_total"] == 5


def test_observe_latency_fills_the_histogram() -> None:
    metrics.observe_latency("lat_exp", "treatment", 3.0)
    metrics.observe_latency("lat_exp", "treatment", 40.0)
    metrics.observe_latency("lat_exp", None, 0.5)
    label = {"experiment": "lat_exp", "variant": "treatment"}
    assert _value("experiment_reco_latency_ms_count", **label) == 2
    assert _value("experiment_reco_latency_ms_sum", **label) == 43.0
    # cumulative buckets: 3 ms falls in le=5, 40 ms in le=50 (bounds from LATENCY_BUCKETS_MS)
    assert _value("experiment_reco_latency_ms_bucket", le="2.5", **label) == 0
    assert _value("experiment_reco_latency_ms_bucket", le="5.0", **label) == 1
    assert _value("experiment_reco_latency_ms_bucket", le="50.0", **label) == 2
    assert _value("experiment_reco_latency_ms_count", experiment="lat_exp", variant="none") == 1
    text = metrics.metrics_text()
    assert "# TYPE experiment_reco_requests_total counter" in text
    assert "# TYPE experiment_reco_latency_ms histogram" in text
    with pytest.raises(ValueError):
        metrics.observe_latency("lat_exp", "treatment", -1.0)
