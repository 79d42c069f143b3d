"""Sample size: users per variant and days needed to detect an effect, with a power curve."""

from __future__ import annotations

import streamlit as st

from abcore import formatting as fmt
from abcore.dashboard import ui
from abcore.dashboard.views import sample_size


def body() -> None:
    st.title("🧮 Sample size")
    st.caption("How many users does each variant need, and how long will that take?")

    kind = st.radio("Metric type", ["Conversion rate", "Mean (continuous)"], horizontal=True, key="ss_kind")
    cols = st.columns(3)
    if kind == "Conversion rate":
        baseline_pct = cols[0].number_input("Baseline conversion rate (%)", 0.01, 99.99, 10.0, 0.5, key="ss_baseline")
        baseline = baseline_pct / 100.0
        std = None
    else:
        baseline = cols[0].number_input("Baseline mean", value=10.0, step=1.0, key="ss_mean")
        std = cols[0].number_input("Standard deviation", min_value=0.0001, value=5.0, step=0.5, key="ss_std")
    mode = cols[1].radio("Effect is", ["relative", "absolute"], horizontal=True, key="ss_mode")
    relative = mode == "relative"
    if relative:
        mde = cols[1].number_input("Minimum detectable effect (% of baseline)", 0.1, 1000.0, 5.0, 0.5,
                                   key="ss_mde_rel") / 100.0
    elif kind == "Conversion rate":
        mde = cols[1].number_input("Minimum detectable effect (percentage points)", 0.01, 99.0, 1.0, 0.1,
                                   key="ss_mde_abs") / 100.0
    else:
        mde = cols[1].number_input("Minimum detectable difference in means", 0.0001, value=0.5, step=0.1,
                                   key="ss_mde_abs_mean")
    alpha = cols[2].select_slider("Significance level α", options=[0.01, 0.05, 0.10], value=0.05, key="ss_alpha")
    power = cols[2].select_slider("Power", options=[0.7, 0.8, 0.85, 0.9, 0.95], value=0.8, key="ss_power")
    cols = st.columns(3)
    n_variants = cols[0].number_input("Number of variants (incl. control)", 2, 20, 2, key="ss_variants")
    daily = cols[1].number_input("Daily eligible users", 0, value=5000, step=500, key="ss_daily")
    share = cols[2].slider("Share of traffic in the experiment (%)", 1, 100, 100, key="ss_share") / 100.0

    plan = sample_size.sample_plan(
        baseline=baseline,
        mde=mde,
        relative=relative,
        metric_kind="proportion" if kind == "Conversion rate" else "mean",
        std=std,
        alpha=alpha,
        power=power,
        n_variants=int(n_variants),
        daily_traffic=float(daily),
        traffic_share=share,
    )
    if plan.error:
        st.error(f"Cannot compute a sample size: {plan.error}.", icon="⚠️")
        return
    with st.container(key="ss_result"):  # text, not st.metric: no extra chunk for the browser to load
        st.markdown(f"Users per variant **{fmt.format_int(plan.per_variant)}** &nbsp;·&nbsp; Users in total "
                    f"**{fmt.format_int(plan.total)}** &nbsp;·&nbsp; Days needed "
                    f"**{fmt.format_int(plan.days) if plan.days else 'no traffic'}**")

    curve = sample_size.power_curve(
        baseline=baseline, mde=mde, relative=relative, metric_kind="proportion" if kind == "Conversion rate" else "mean",
        std=std, alpha=alpha, n_max=max(10, int(plan.per_variant * 2)),
    )
    with st.container(key="ss_power_curve"):  # an SVG chart like the results page's (no Plotly bundle to load)
        st.markdown(f"<div>{sample_size.power_chart(curve, power, plan.per_variant)}</div>", unsafe_allow_html=True)
    st.caption("Two-sided test; the control and every treatment get the same number of users. "
               "With more than two variants, consider a stricter α for multiple comparisons.")


if ui.start_page():
    ui.guarded(body)
