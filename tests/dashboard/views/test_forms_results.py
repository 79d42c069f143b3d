"""abcore.dashboard.views.forms helpers of the results page, on a real analysis of a small experiment."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from sqlmodel import Session

from abcore import experiments as ex
from abcore import formatting as fmt
from abcore.analysis.pipeline import analyze
from abcore.assign import Assigner
from abcore.dashboard.views import forms, html
from abcore.store.db import make_engine


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
    assert [row["Variant"] for row in rows] == ["control", "b"]  # no "control (control)"
    n_a, c_a, n_b, c_b = r.control_users, r.control_conversions, r.users, r.conversions
    assert n_a + n_b == 400
    assert rows[0]["Users"] == f"{n_a:,}" and rows[0]["Conversions"] == f"{c_a:,}"
    assert rows[0]["Rate"] == f"{c_a / n_a * 100:.2f} %"
    # Unpooled (Wald) difference and 95 % CI, by hand: d +- 1.959964 * sqrt(pa qa / na + pb qb / nb)
    pa, pb = c_a / n_a, c_b / n_b
    d = pb - pa
    half = 1.959963985 * math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    # a rate difference is in percentage points, two decimals like the rates
    expected = f"{d * 100:+.2f} pp [{(d - half) * 100:+.2f} pp, {(d + half) * 100:+.2f} pp]"
    assert rows[1]["Difference [CI]"] == expected
    assert rows[1]["Lift [CI]"].startswith(fmt.format_pct(pb / pa - 1, 1, signed=True))
    assert rows[1]["p-value (adj.)"] == fmt.format_pvalue(r.p_value_adjusted)
    assert rows[1]["Outcome"] == forms.OUTCOME_LABELS[r.outcome]
    assert forms.metric_rows(results, "unknown") == []
    assert forms.metrics_in_order(results)[0] == ("conversion", "primary")


def test_verdict_and_health_levels() -> None:
    assert forms.verdict_label("ship", "b") == ("Ship treatment: b", "green")
    assert forms.verdict_label("no_winner")[0] == "No winner: do not ship"
    assert forms.verdict_label("keep_control") == ("Keep control", "orange")
    assert forms.verdict_label("keep_running") == ("Keep running", "blue")
    assert forms.verdict_label("shipped", "b") == ("Shipped: b", "green")  # finished experiments
    assert forms.verdict_label("cancelled") == ("Cancelled", "gray")
    ok = SimpleNamespace(ok=True, severity="ok")
    warn = SimpleNamespace(ok=False, severity="warning")
    err = SimpleNamespace(ok=False, severity="error")
    assert forms.health_level([ok]) == "ok"
    assert forms.health_level([ok, warn]) == "warning"
    assert forms.health_level([warn, err]) == "error"


def test_display_rules_of_the_results_page() -> None:
    # Okabe & Ito (2008) palette, in variant order: control blue #0072B2, first treatment orange #E69F00
    colors = forms.variant_colors(["control", "a", "b"])
    assert colors == {"control": "#0072B2", "a": "#E69F00", "b": "#009E73"}
    assert len(set(forms.variant_colors([str(i) for i in range(8)]).values())) == 8
    assert forms.variant_label("control", True) == "control"
    assert forms.variant_label("baseline", True) == "baseline (control)"
    assert forms.variant_label("b", False) == "b"
    # hand-computed: 0.0123 -> 1.23 percentage points
    assert fmt.format_pp(0.0123) == "+1.23 pp" and fmt.format_pp(-0.005) == "-0.50 pp"
    assert fmt.format_fixed(8.729) == "8.729" and fmt.format_fixed(8.7) == "8.700"
    assert fmt.format_fixed(-0.0001) == "0.000"
    assert fmt.format_expected_loss(0.00012, binary=True) == "0.01 pp"
    assert fmt.format_expected_loss(0.00001, binary=True) == "< 0.01 pp"
    assert fmt.format_expected_loss(0.25, binary=False) == "0.250"
    assert fmt.format_expected_loss(0.0001, binary=False) == "< 0.001"
    assert forms.format_whole_days(6.0) == "6" and forms.format_whole_days(13.9) == "13"
    from datetime import date
    assert forms.day_labels([date(2026, 12, 1)]) == ["2026-12-01"]


HOSTILE_TEXT = [
    "gr![i](http://attacker.invalid/i.png)", "[click](http://evil.example) **bold** <b>x</b> _u_ ~~s~~",
    "home.slate_v2", "see http://evil.example or www.evil.example or a@evil.example", "x `code` y ``z``",
    "a -> b <-> c -- d >= e ~= f", ":rocket: :material/home: :streamlit: :red[x] ::x:", "$x$ and $$y$$ | t |",
    "&amp; &#42; \\* trailing\\", "1. item\n# head\n- list\n> quote\n    indented", "+ plus", "2) two",
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_user_text_is_shown_as_typed_without_links_or_added_characters(text: str) -> None:
    from tests.dashboard.markdown_view import shown

    source = html.plain_text(text)
    view = shown(source)
    assert view.problems() == [], (text, source)  # no link, image, code, emphasis, heading, list, emoji, arrow
    assert view.text == text  # every character as typed, line breaks kept
    assert "\u2060" not in source and "\u200b" not in source  # nothing invisible: a copied name equals the name
    assert html.plain_text(None) == "" and html.plain_text("") == ""


def _guardrail_worse() -> object:
    """Treatment B raises latency_ms (lower is better) by 30 % with an interval far from 0: judged "worse"."""
    from abcore.analysis.results import MetricResult
    from abcore.stats import TestResult

    test = TestResult(control=100.0, treatment=130.0, diff=30.0, ci_low=28.0, ci_high=32.0, lift=0.3,
                      lift_ci_low=0.28, lift_ci_high=0.32, statistic=30.0, p_value=1e-12, dof=None, significant=True)
    row = MetricResult(metric="latency_ms", role="guardrail", kind="mean", variant_id=2, variant="B",
                       control_variant="A", control_users=200, users=200, control_conversions=None, conversions=None,
                       control_value=100.0, value=130.0, control_std=10.0, std=10.0, test=test,
                       p_value_adjusted=1e-12, significant=True, method="frequentist", direction="decrease",
                       outcome="worse", metric_kind="mean")
    return SimpleNamespace(metrics=(row,))


def test_a_guardrail_that_got_worse_reads_worse_in_the_table_like_the_forest_plot() -> None:
    from abcore.dashboard.views.result_charts import OUTCOME_COLORS, forest

    results = _guardrail_worse()
    rows = forms.metric_rows(results, "latency_ms")
    assert rows[1]["Outcome"] == "🔻 worse" and "✅" not in " ".join(rows[1].values())
    assert "Significant" not in rows[1]
    chart = forest(results)
    assert chart is not None and OUTCOME_COLORS["worse"] in chart and OUTCOME_COLORS["better"] not in chart
