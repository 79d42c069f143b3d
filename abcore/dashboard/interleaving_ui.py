"""The results page of an interleaving experiment: the preference per ranker pair, the verdict, a CSV download
(:func:`abcore.analysis.interleaving.analyze_interleaving`, the numbers of ``abcore interleaving``)."""

from __future__ import annotations

import csv
import io
from typing import Any

import streamlit as st

from abcore import formatting as fmt
from abcore.analysis.interleaving import CSV_COLUMNS, analyze_interleaving, csv_rows, daily_preference
from abcore.dashboard import ui
from abcore.dashboard.views import html


def pair_rows(results: Any) -> list[dict[str, str]]:
    """One formatted row per ranker pair (the table of the page)."""
    confidence = f"{(1 - results.alpha) * 100:g} % CI"
    return [
        {"ranker A": p.ranker_a, "ranker B": p.ranker_b, "users": fmt.format_int(p.counts.users),
         "A wins": fmt.format_int(p.counts.wins), "B wins": fmt.format_int(p.counts.losses),
         "ties": fmt.format_int(p.counts.ties), "A preferred": fmt.format_pct(p.preference.share, 1),
         confidence: f"{fmt.format_pct(p.preference.ci_low, 1)} to {fmt.format_pct(p.preference.ci_high, 1)}",
         "p-value": fmt.format_pvalue(p.preference.p_value), "adj. p": fmt.format_pvalue(p.p_adjusted),
         "credit A-B / impression": fmt.format_fixed(p.credit.estimate, 4), "outcome": p.outcome}
        for p in results.pairs
    ]


def section(experiment: Any) -> None:
    """Draw the interleaving results of ``experiment`` (a stored interleaving experiment)."""
    with ui.session() as s:
        results = analyze_interleaving(int(experiment.id), session=s)
    st.caption(f"Interleaving ({results.method}): each user saw one list merged from the rankers; clicks on "
               f"{html.plain_text(results.metric)} are credited to the ranker that contributed the item.")
    decision = results.verdict
    (st.success if decision.decision == "ship" else st.info)(f"**{decision.decision}** — {decision.reason}")
    st.markdown(html.html_table(pair_rows(results), key_columns=2), unsafe_allow_html=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(results))
    _chart(experiment)
    st.download_button("Download CSV", buffer.getvalue(), file_name=f"{experiment.id}-interleaving.csv",
                       mime="text/csv", key="interleaving_csv")


def _chart(experiment: Any) -> None:
    """The share of users preferring ranker A at the end of each day, per pair, with its interval band."""
    import plotly.graph_objects as go

    with ui.session() as s:
        points = daily_preference(int(experiment.id), session=s)
    if not points:
        return
    fig = go.Figure()
    for a, b in dict.fromkeys((p.ranker_a, p.ranker_b) for p in points):
        mine = [p for p in points if (p.ranker_a, p.ranker_b) == (a, b)]
        days = [p.day for p in mine]
        fig.add_trace(go.Scatter(x=days + days[::-1], y=[p.ci_high for p in mine] + [p.ci_low for p in mine[::-1]],
                                 fill="toself", opacity=0.2, line={"width": 0}, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=days, y=[p.share for p in mine], mode="lines+markers", name=f"{a} over {b}"))
    fig.add_hline(y=0.5, line_dash="dash", annotation_text="no preference")
    fig.update_layout(title="Users preferring ranker A, cumulative by day", yaxis={"tickformat": ".0%"}, height=360,
                      margin={"t": 50, "b": 40})
    st.plotly_chart(fig, key="interleaving_over_time")
