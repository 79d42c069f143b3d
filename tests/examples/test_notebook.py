"""The analysis notebook (examples/analysis/ab_testing_analysis.ipynb) runs top to bottom with nbclient,
and the headline numbers it reproduces by hand equal analyze()'s on SQLite and on DuckDB.

The expected side is the notebook's own pandas + statsmodels computation on the exported CSV rows
(statsmodels ``test_proportions_2indep`` / ``confint_proportions_2indep`` with ``method="wald"``,
``CompareMeans.ttest_ind`` / ``tconfint_diff`` with ``usevar="unequal"``, ``multipletests(method="holm")``),
saved as ``reproduced.json``; this test runs ``analyze`` itself on the store the notebook left behind.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from abcore.analysis.pipeline import analyze
from abcore.store.db import make_engine

nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the test extras (nbclient, ipykernel)")
nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the test extras (nbformat)")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "analysis" / "ab_testing_analysis.ipynb"
HEADLINE = ("control_users", "users", "control_value", "value", "diff", "ci_low", "ci_high", "p_value",
            "p_value_adjusted")


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The notebook executed in a fresh kernel, its working directory (store, CSVs, reproduced.json)."""
    workdir = tmp_path_factory.mktemp("notebook")
    env = {"ABCORE_NOTEBOOK_DIR": str(workdir), "ABCORE_NOTEBOOK_DEMO_SCALE": "0.3"}
    saved = {k: os.environ.get(k) for k in (*env, "ABCORE_NOTEBOOK_STORE_URL", "PYTHONPATH")}
    os.environ.update(env)
    os.environ.pop("ABCORE_NOTEBOOK_STORE_URL", None)
    # The kernel imports the abcore of this checkout (as the test process does).
    root = str(NOTEBOOK.parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, saved["PYTHONPATH"]) if p)
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(workdir)}})
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, workdir


def test_notebook_runs_without_errors(executed: tuple[Any, Path]) -> None:
    nb, workdir = executed
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    for what in ("results", "assignments", "events"):
        assert (workdir / f"ranker_two_tower_vs_als_{what}.csv").stat().st_size > 0
    # The last code cell draws the chart: a Vega-Lite bundle in its output.
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert any("application/vnd.vegalite.v5+json" in o.get("data", {}) or "text/html" in o.get("data", {})
               for o in last.outputs)


@pytest.mark.parametrize("engine", ["store", "duckdb"])
def test_reproduced_numbers_equal_analyze(executed: tuple[Any, Path], engine: str) -> None:
    _, workdir = executed
    saved = json.loads((workdir / "reproduced.json").read_text())
    by_hand = {(r["metric"], r["variant"]): r for r in saved["rows"]}
    db = make_engine(saved["store_url"])
    try:
        with Session(db) as session:
            res = analyze(saved["experiment"], session=session, engine=engine)
    finally:
        db.dispose()
    assert res.engine == engine
    frame = res.to_frame()
    assert set(zip(frame.metric, frame.variant, strict=True)) == set(by_hand)
    assert len(by_hand) == 6  # 3 metrics x 2 treatments of the demo experiment
    for row in frame.to_dict(orient="records"):
        expected = by_hand[(row["metric"], row["variant"])]  # pandas + statsmodels on the CSV rows
        assert row["kind"] == expected["kind"]
        for col in HEADLINE:
            assert math.isfinite(expected[col])
            assert row[col] == pytest.approx(expected[col], rel=1e-9, abs=1e-12), (row["metric"], row["variant"], col)
