"""abcore.forms helpers of the results page, on a real analysis of a small experiment."""

from __future__ import annotations

import math
from types import SimpleNamespace

from sqlmodel import Session

from abcore import experiments as ex
from abcore import forms
from abcore.analysis import analyze
from abcore.assign import Assigner
from abcore.db import make_engine


def _analysed(url: str) -> object:
    with Session(make_engine(url), expire_on_commit=False) as s:
        exp = ex.create_experiment(session=s, data=ex.ExperimentCreate(
            name="rows", variants=[ex.VariantCreate(name="control", allocation_pct=50),
                                   ex.VariantCreate(name="b", allocation_pct=50)]))
        ex.start_experiment(session=s, ref=exp.id)
    assigner = Assigner(url, timeout=10.0, cache_ttl=0.0)
    for i in range(400):
        a = assigner.assign(f"u{i}", "rows")
        assert a is not None
        # every 5th control user and every 4th treatment user converts (by index, deterministic)
        if i % (5 if a.is_control else 4) == 0:
            assigner.track(f"u{i}", "rows", "conversion")
    assigner.close()
    with Session(make_engine(url)) as s:
        return analyze("rows", session=s)


def test_metric_rows_format_the_analysis(sqlite_url: str) -> None:
    results = _analysed(sqlite_url)
    r = results.metrics[0]
    rows = forms.metric_rows(results, "conversion")
    assert [row["Variant"] for row in rows] == ["control (control)", "b"]
    n_a, c_a, n_b, c_b = r.control_users, r.control_conversions, r.users, r.conversions
    assert n_a + n_b == 400
    assert rows[0]["Users"] == f"{n_a:,}" and rows[0]["Conversions"] == f"{c_a:,}"
    assert rows[0]["Rate"] == f"{c_a / n_a * 100:.2f}%"
    # Unpooled (Wald) difference and 95 % CI, by hand: d +- 1.959964 * sqrt(pa qa / na + pb qb / nb)
    pa, pb = c_a / n_a, c_b / n_b
    d = pb - pa
    half = 1.959963985 * math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    expected = f"{forms.format_pct(d, 2, signed=True)} {forms.format_interval(d - half, d + half, digits=2)}"
    assert rows[1]["Difference [CI]"] == expected
    assert rows[1]["Lift [CI]"].startswith(forms.format_pct(pb / pa - 1, 1, signed=True))
    assert rows[1]["p-value (adj.)"] == forms.format_pvalue(r.p_value_adjusted)
    assert rows[1]["Significant"] in ("✅ yes", "no")
    assert forms.metric_rows(results, "unknown") == []
    assert forms.metrics_in_order(results)[0] == ("conversion", "primary")


def test_verdict_and_health_levels() -> None:
    assert forms.verdict_label("ship", "b") == ("Ship treatment: b", "green")
    assert forms.verdict_label("keep_control") == ("Keep control", "orange")
    assert forms.verdict_label("keep_running") == ("Keep running", "blue")
    ok = SimpleNamespace(ok=True, severity="ok")
    warn = SimpleNamespace(ok=False, severity="warning")
    err = SimpleNamespace(ok=False, severity="error")
    assert forms.health_level([ok]) == "ok"
    assert forms.health_level([ok, warn]) == "warning"
    assert forms.health_level([warn, err]) == "error"
