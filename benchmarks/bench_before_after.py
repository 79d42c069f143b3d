"""Before/after in one run: the same measurements on this checkout and on an earlier revision.

``ABCORE_BENCH_BASELINE=<git revision> pytest -m bench -s benchmarks/bench_before_after.py``

The baseline's files are extracted with ``git archive`` into a temporary folder and imported from there
(``PYTHONPATH``) in fresh subprocesses; this checkout runs the same code through the public names that both
share (``abcore.assign.Assigner``, ``abcore.analyze``, ``abcore.create_experiment``, ...). Runs alternate
(after, before, after, before, ...) so a change in the machine's load hits both sides alike, and every line
prints the ratio after / before (the anchor of the figure is the baseline measured in the same run).

Measured, what a person waits for:

* ``assign`` for a returning user and for a new user (median of many calls, warm process, SQLite store);
* ``analyze`` of the demo's ranker experiment on the store engine and on DuckDB (wall time in a fresh process);
* the results page of that experiment fully drawn in Chromium (warm median of several opens), each side
  served by its own ``streamlit run`` of its own dashboard script.

Without ``ABCORE_BENCH_BASELINE`` the test is skipped (it says so).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[1]
BASELINE = os.environ.get("ABCORE_BENCH_BASELINE", "").strip()
ROUNDS = int(os.environ.get("ABCORE_BENCH_ROUNDS", "3"))
DEMO_SCALE = float(os.environ.get("ABCORE_BENCH_DEMO_SCALE", "1"))
RESULTS_OPENS = 5  # the first open is cold; the median of the others is the warm figure

ASSIGN_CODE = """
import json, statistics, sys, time
from sqlmodel import Session
import abcore
from abcore.assign import Assigner
engine = abcore.init_db(abcore.make_engine(sys.argv[1]))
with Session(engine) as s:
    abcore.create_experiment(session=s, data=abcore.ExperimentCreate(name="bench", salt="bench-salt", variants=[
        abcore.VariantCreate(name="a", allocation_pct=50), abcore.VariantCreate(name="b", allocation_pct=50)]))
    abcore.start_experiment(session=s, ref="bench")
client = Assigner(engine, max_buffer=10**9, flush_interval=3600)
new, returning = [], []
users = [f"user-{i}" for i in range(2000)]
for u in users:
    t = time.perf_counter(); client.assign(u, "bench"); new.append(time.perf_counter() - t)
for _ in range(30):
    for u in users:
        t = time.perf_counter(); client.assign(u, "bench"); returning.append(time.perf_counter() - t)
client.close(timeout=60)
print(json.dumps({"assign new user (us)": statistics.median(new) * 1e6,
                  "assign returning user (us)": statistics.median(returning) * 1e6}))
"""

ANALYZE_CODE = """
import json, sys, time
from sqlmodel import Session
import abcore
engine = abcore.make_engine(sys.argv[1])
out = {}
for name in ("store", "duckdb"):
    with Session(engine) as s:
        t = time.perf_counter()
        abcore.analyze("ranker_two_tower_vs_als", session=s, engine=name)
        out[f"analyze, {name} engine (s)"] = time.perf_counter() - t
print(json.dumps(out))
"""


def _extract(revision: str, target: Path) -> Path:
    archive = target / "baseline.tar"
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), revision],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"git archive {revision} failed: {done.stderr.strip()}")
    tree = target / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _run(code: str, tree: Path, *args: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _dashboard_script(tree: Path) -> Path:
    """The dashboard's main script of ``tree`` (inside the package, or at the root in older layouts)."""
    inside = tree / "abcore" / "dashboard" / "app.py"
    return inside if inside.exists() else tree / "app.py"


def _results_page_seconds(tree: Path, db_url: str, workdir: Path) -> dict[str, float]:
    """Cold and warm seconds until the results page is fully drawn in Chromium, served from ``tree``."""
    from playwright.sync_api import sync_playwright
    from sqlmodel import Session

    from abcore import experiments, make_engine
    from tests.dashboard.e2e.browser import launch
    from tests.dashboard.e2e.browser import open_timed as _open
    from tests.dashboard.e2e.conftest import dashboard_process

    with Session(make_engine(db_url)) as s:
        experiment_id = experiments.get_experiment(session=s, ref="ranker_two_tower_vs_als").id
    env = {"PYTHONPATH": str(tree)}
    with dashboard_process(db_url, workdir, env=env, script=_dashboard_script(tree), cwd=tree) as base, \
            sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page, *_ = _open(context, base)
        page.close()
        fulls = []
        for _ in range(RESULTS_OPENS):
            page, _first, full, _state = _open(context, f"{base}/results?experiment={experiment_id}",
                                               charts=6, tables=3)
            fulls.append(full)
            page.close()
        browser.close()
    return {"results page, cold (s)": fulls[0], "results page, warm median (s)": statistics.median(fulls[1:])}


@pytest.fixture(scope="module")
def baseline_tree() -> Iterator[Path]:
    if not BASELINE:
        pytest.skip("set ABCORE_BENCH_BASELINE to a git revision to compare with (e.g. the last release)")
    with tempfile.TemporaryDirectory(prefix="abcore-baseline-") as folder:
        yield _extract(BASELINE, Path(folder))


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    from abcore import init_db, make_engine
    from abcore.demo import load_demo_data

    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    engine = init_db(make_engine(url))
    load_demo_data(engine, scale=DEMO_SCALE)
    engine.dispose()
    return url


def _report(title: str, after: dict[str, list[float]], before: dict[str, list[float]]) -> None:
    print(f"\n{title} (median of {ROUNDS} alternating rounds; baseline {BASELINE})")
    for key in after:
        a, b = statistics.median(after[key]), statistics.median(before[key])
        print(f"  {key:<34} after {a:10.3f}   before {b:10.3f}   after/before {a / b:5.2f}x")


def _rounds(measure: object, tree: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    after: dict[str, list[float]] = {}
    before: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        for side, folder in ((after, ROOT), (before, tree)):
            for key, value in measure(folder).items():  # type: ignore[operator]
                side.setdefault(key, []).append(value)
    return after, before


def test_assign_before_after(baseline_tree: Path, tmp_path: Path) -> None:
    counter = iter(range(10**6))

    def measure(tree: Path) -> dict[str, float]:
        return _run(ASSIGN_CODE, tree, f"sqlite:///{tmp_path / f'assign-{next(counter)}.db'}")

    _report("assign", *_rounds(measure, baseline_tree))


def test_analyze_before_after(baseline_tree: Path, demo_db: str) -> None:
    _report("analyze on the demo data", *_rounds(lambda tree: _run(ANALYZE_CODE, tree, demo_db), baseline_tree))


@pytest.mark.e2e
def test_results_page_before_after(baseline_tree: Path, demo_db: str, tmp_path: Path) -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("needs Debian's chromium (/usr/bin/chromium)")
    _report("results page in Chromium",
            *_rounds(lambda tree: _results_page_seconds(tree, demo_db, tmp_path), baseline_tree))
