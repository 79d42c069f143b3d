"""Benchmarks (``pytest -m bench -s benchmarks/bench_export_import.py``): export and import throughput, and that memory stays flat.

Python heap peaks are measured with tracemalloc while streaming; flat means the peak for N rows is
about the same as for N/4 rows.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.experiments.lifecycle import create_experiment, start_experiment
from abcore.experiments.records import get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.csv_export import iter_csv
from abcore.io.event_import import import_events
from abcore.store.tables import ExperimentEvent

pytestmark = pytest.mark.bench


def _fill_events(engine: Engine, experiment_id: int, variant_ids: list[int], n: int) -> None:
    ts = datetime(2026, 3, 1, tzinfo=UTC)
    table = ExperimentEvent.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        for start in range(0, n, 50_000):
            connection.execute(
                insert(table),
                [
                    {"experiment_id": experiment_id, "variant_id": variant_ids[i % 2], "user_id": f"user-{i}",
                     "event_type": "conversion", "metric_name": "conversion", "value": 1.0, "ts": ts,
                     "properties": {"i": i}}
                    for i in range(start, min(n, start + 50_000))
                ],
            )


def _export_peak(engine: Engine, experiment_id: int) -> tuple[int, int, float]:
    """(CSV characters, heap peak under tracemalloc, seconds of an untraced run)."""
    began = time.perf_counter()
    size = sum(len(c) for c in iter_csv(engine=engine, experiment=experiment_id, what="events", chunk_size=5_000))
    elapsed = time.perf_counter() - began
    tracemalloc.start()
    for _ in iter_csv(engine=engine, experiment=experiment_id, what="events", chunk_size=5_000):
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size, peak, elapsed


def test_export_memory_is_flat(engine: Engine, session: Session) -> None:
    exp = create_experiment(session=session, data=ExperimentCreate(
        name="bench", variants=[VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)]))
    variant_ids = [v.id for v in get_variants(session=session, experiment_id=exp.id)]  # type: ignore[arg-type]
    _fill_events(engine, exp.id, variant_ids, 50_000)  # type: ignore[arg-type]
    _, small_peak, _ = _export_peak(engine, exp.id)  # type: ignore[arg-type]
    _fill_events(engine, exp.id, variant_ids, 150_000)  # type: ignore[arg-type]
    size, big_peak, elapsed = _export_peak(engine, exp.id)  # type: ignore[arg-type]
    print(f"\n[{engine.dialect.name}] export 200,000 events: {size / 1e6:.1f} MB CSV in {elapsed:.2f} s "
          f"({200_000 / elapsed:,.0f} rows/s); heap peak {big_peak / 1e6:.1f} MB (50,000 rows: {small_peak / 1e6:.1f} MB)")
    assert big_peak < 2 * small_peak + 1_000_000  # 4x the rows, not 4x the memory


def test_import_throughput_and_memory(engine: Engine, session: Session, tmp_path: Path) -> None:
    create_experiment(session=session, data=ExperimentCreate(
        name="bench", variants=[VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)]))
    start_experiment(session=session, ref="bench")

    def write(path: Path, n: int) -> Path:
        with path.open("w", encoding="utf-8") as handle:
            for i in range(n):
                handle.write(json.dumps({"user": f"{path.stem}-u{i // 3}", "experiment": "bench", "variant": "ab"[(i // 3) % 2],
                                         "event": "exposure" if i % 3 else "conversion", "ts": 1772323200 + i}) + "\n")
        return path

    big = write(tmp_path / "big.jsonl", 100_000)
    began = time.perf_counter()
    summary = import_events(engine=engine, path=big)
    elapsed = time.perf_counter() - began
    assert (summary.imported, summary.bad) == (100_000, 0)
    print(f"\n[{engine.dialect.name}] import 100,000 lines: {elapsed:.2f} s ({100_000 / elapsed:,.0f} lines/s); {summary}")
    began = time.perf_counter()
    again = import_events(engine=engine, path=big)
    print(f"[{engine.dialect.name}] re-import (all duplicates): {time.perf_counter() - began:.2f} s; {again}")
    assert again.imported == 0
    peaks = []
    for n, name in ((10_000, "small.jsonl"), (40_000, "large.jsonl")):
        path = write(tmp_path / name, n)
        tracemalloc.start()
        import_events(engine=engine, path=path)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    print(f"[{engine.dialect.name}] import heap peak: 10,000 lines {peaks[0] / 1e6:.1f} MB, 40,000 lines {peaks[1] / 1e6:.1f} MB")
    assert peaks[1] < 2 * peaks[0] + 1_000_000
