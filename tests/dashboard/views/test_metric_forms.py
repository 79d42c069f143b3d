"""abcore.dashboard.views.metric_forms: the Metrics page's words and the form values validate_metric checks (no Streamlit).

Expected words are written out by hand from the definitions; expected problems come from
abcore.metrics.validate_metric itself.
"""

from __future__ import annotations

from types import SimpleNamespace

from abcore.dashboard.views import metric_forms as mf
from abcore.metrics import validate_metric
from tests.dashboard.markdown_view import text


def _row(**fields: object) -> SimpleNamespace:
    base = {"name": "m", "kind": "binomial", "direction": "increase", "numerator": None, "denominator": None,
            "quantile": None, "window_hours": None, "delay_hours": 0.0, "cap": None, "cap_upper": None,
            "cap_lower": None, "min_detectable_effect": None, "archived": False, "description": ""}
    return SimpleNamespace(**{**base, **fields})


def test_directions_in_words() -> None:
    assert mf.direction_words("increase") == "higher is better"
    assert mf.direction_label("decrease") == "↓ lower is better"


def test_kinds_windows_and_caps_in_words() -> None:
    assert mf.kind_words(_row()) == "Conversion"
    assert mf.kind_words(_row(kind="ratio", numerator="revenue", denominator="sessions")) == "Ratio: revenue / sessions"
    assert mf.kind_words(_row(kind="quantile", quantile=0.95)) == "Quantile: p95"
    assert mf.kind_words(_row(kind="quantile", quantile=0.995)) == "Quantile: p99.5"
    assert mf.window_words(None, 0.0) == "whole experiment"
    assert mf.window_words(24.0, 0.0) == "first 24 h after exposure"
    assert mf.window_words(48.0, 1.5) == "48 h, starting 1.5 h after exposure"
    assert mf.window_words(None, 2.0) == "from 2 h after exposure to the end"
    assert mf.cap_words(None, None, None) == "none"
    assert mf.cap_words("absolute", 1000.0, None) == "per-user values at most 1000"
    assert mf.cap_words("absolute", 5.0, 0.0) == "per-user values clipped to [0, 5]"
    assert mf.cap_words("percentile", 0.99, None) == "at the 99th percentile of all users"
    assert mf.cap_words("percentile", 0.99, 0.01) == "between the 1st and 99th percentiles of all users"
    assert mf.cap_words("percentile", 0.92, 0.13) == "between the 13th and 92nd percentiles of all users"


def test_table_rows() -> None:
    (row,) = mf.metric_table_rows([_row(name="latency_ms", kind="mean", direction="decrease", archived=True,
                                        min_detectable_effect=0.02)])
    assert row == {"Name": "latency_ms", "Kind": "Mean per user", "Better when": "↓ lower is better",
                   "Window": "whole experiment", "Capping": "none", "Min. effect": "2 %", "Archived": "yes",
                   "Description": ""}


def test_form_values_drop_what_the_kind_does_not_use() -> None:
    values = mf.metric_values(name="x", kind="binomial", direction="increase", numerator="a", denominator="b",
                              quantile=0.5, cap="absolute", cap_upper=3.0, min_effect_pct=2.0)
    assert (values["numerator"], values["denominator"], values["quantile"], values["cap"], values["cap_upper"]) == (
        None, None, None, None, None)
    assert values["min_detectable_effect"] == 0.02 and validate_metric(values) == []
    ratio = mf.metric_values(name="x", kind="ratio", direction="increase", numerator="a", denominator="")
    assert validate_metric(ratio) == ["a ratio metric needs a denominator (an event metric name)."]


def test_define_problems_add_a_taken_name_but_not_the_edited_one() -> None:
    values = mf.metric_values(name="latency_ms", kind="mean", direction="decrease")
    assert mf.define_problems(values, ["latency_ms"]) == [
        "a metric named 'latency_ms' already exists (edit it below instead)."]
    assert mf.define_problems(values, ["latency_ms"], editing="latency_ms") == []


def test_picker_labels_and_the_undefined_warning() -> None:
    directions = {"latency_ms": "decrease"}
    assert mf.option_label("latency_ms", directions) == "latency_ms — lower is better"
    assert mf.option_label("typed_name", directions) == "typed_name"  # a typed value maps to itself
    assert mf.metric_options(["watch", "latency_ms"]) == ["latency_ms", "watch", "conversion"]
    assert mf.metric_options(["conversion", "a"]) == ["a", "conversion"]
    assert mf.undefined_warning(["latency_ms", ""], directions) is None
    warning = mf.undefined_warning(["conversion", "latency_ms", "conversion"], directions)
    assert warning is not None and text(warning).startswith("No metric definition for conversion:")
