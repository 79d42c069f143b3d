"""End to end: interleave + track through an Assigner, then analyze_interleaving, the CLI and the CSV.

Expected numbers: the per-user win/loss rule applied in the test to the lists and clicks it made (plain Python
on the raw clicks), and scipy for the sign test's order of magnitude."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sqlmodel import Session

from abcore.analysis.interleaving import analyze_interleaving
from abcore.assign import Assigner
from abcore.assign.interleave import interleave
from abcore.cli.main import main
from abcore.errors import Invalid
from abcore.experiments.schemas import VariantCreate
from abcore.store.db import make_engine
from tests.factories import make_experiment

GOOD = [f"i{k}" for k in range(20)]


def _run(url: str, users: int = 150, *, control_good: bool = False) -> tuple[int, int, int]:
    """Serve ``users`` users once each, click good items (i0-i4) more; returns the expected (wins, losses, ties)."""
    make_experiment(url, "rank", [VariantCreate(name="base", allocation_pct=50, is_control=True),
                                  VariantCreate(name="new", allocation_pct=50)],
                    kind="interleaving", primary_metric="click")
    client = Assigner(url)
    rng = np.random.default_rng(4)
    expected = [0, 0, 0]
    for u in range(users):
        shuffled = [str(x) for x in rng.permutation(GOOD)[:10]]
        lists = {"base": GOOD[:10], "new": shuffled} if control_good else {"base": shuffled, "new": GOOD[:10]}
        shown = interleave(client, f"u{u}", "rank", lists, request_id="r")
        assert shown is not None
        credit = {"base": 0, "new": 0}
        for pos, item in enumerate(shown.items):
            if rng.random() < (0.6 if int(item[1:]) < 5 else 0.05) / (pos + 1) ** 0.5:
                client.track(f"u{u}", "rank", "click", properties={"item": item, "impression": shown.impression_id})
                if shown.owners[pos] is not None:
                    credit[shown.owners[pos]] += 1
        a, b = credit["base"], credit["new"]
        expected[0 if a > b else 1 if a < b else 2] += a != b or a > 0
    client.close()
    return expected[0], expected[1], expected[2]


def test_analysis_counts_and_verdict(sqlite_url: str) -> None:
    wins, losses, ties = _run(sqlite_url)
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        res = analyze_interleaving("rank", session=session)
    engine.dispose()
    (pair,) = res.pairs
    assert (pair.ranker_a, pair.ranker_b) == ("base", "new")
    assert (pair.counts.wins, pair.counts.losses, pair.counts.ties, pair.counts.users) == (wins, losses, ties, 150)
    assert pair.preference.share == pytest.approx(wins / (wins + losses))
    assert pair.outcome == "worse" and res.verdict.decision == "ship" and res.verdict.variant == "new"
    assert pair.credit.estimate < 0 and pair.credit.ci_high < 0


def test_control_preferred_keeps_control(sqlite_url: str) -> None:
    _run(sqlite_url, control_good=True)
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        res = analyze_interleaving("rank", session=session)
        make_experiment(engine, "plain")
        with pytest.raises(Invalid, match="not an interleaving one"):
            analyze_interleaving("plain", session=session)
        with pytest.raises(Invalid, match="correction"):
            analyze_interleaving("rank", session=session, correction="odd")
    engine.dispose()
    assert res.pairs[0].outcome == "better" and res.verdict.decision == "keep_control"


def test_no_clicks_keeps_running(sqlite_url: str) -> None:
    make_experiment(sqlite_url, "rank", [VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)],
                    kind="interleaving", primary_metric="click")
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        res = analyze_interleaving("rank", session=session)
    engine.dispose()
    assert res.verdict.decision == "keep_running" and res.pairs[0].counts.users == 0


def test_cli_table_csv_and_size(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    wins, losses, ties = _run(sqlite_url, 80)
    assert main(["--database-url", sqlite_url, "interleaving", "rank"]) == 0
    out = capsys.readouterr().out
    assert "Verdict:" in out and "base" in out
    assert main(["--database-url", sqlite_url, "interleaving", "rank", "--csv", "-"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (int(row["wins"]), int(row["losses"]), int(row["ties"])) == (wins, losses, ties)
    assert main(["--database-url", sqlite_url, "interleaving", "nope"]) == 1
    assert main(["interleaving-size", "--share", "0.6", "--baseline", "0.3", "--mde", "0.01"]) == 0
    assert "interleaving: 194 users" in capsys.readouterr().out  # ((1.96/2 + 0.8416 sqrt(.24)) / .1)^2 = 193.9
    assert main(["interleaving-size", "--share", "0.5"]) == 1


def test_sequential_option(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from abcore.stats.interleaving import sequential_preference

    _run(sqlite_url, 80)
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        res = analyze_interleaving("rank", session=session, sequential=True, planned=500)
    engine.dispose()
    (pair,) = res.pairs
    assert res.test == "sequential"
    assert pair.preference == sequential_preference(pair.counts, planned=500)
    assert main(["--database-url", sqlite_url, "interleaving", "rank", "--sequential"]) == 0
    assert "test sequential" in capsys.readouterr().out


def test_daily_preference_is_the_analysis_at_each_midnight(sqlite_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from abcore.analysis.interleaving import daily_preference
    from abcore.store.tables import Experiment, ExperimentEvent

    _run(sqlite_url, 60)
    engine = make_engine(sqlite_url)
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:  # the first 20 users' events a day earlier: two days of data
        conn.execute(update(Experiment).values(started_at=today - timedelta(days=1)))
        conn.execute(update(ExperimentEvent).where(ExperimentEvent.user_id.in_([f"u{k}" for k in range(20)]))
                     .values(ts=today - timedelta(days=1)))
    with Session(engine) as session:
        points = daily_preference("rank", session=session)
        midnight = datetime.combine(today.date(), datetime.min.time(), tzinfo=UTC)
        first = analyze_interleaving("rank", session=session, end=midnight).pairs[0]
        last = analyze_interleaving("rank", session=session).pairs[0]
    engine.dispose()
    assert [p.day for p in points] == [today.date() - timedelta(days=1), today.date()]
    assert (points[0].users, points[0].share) == (first.counts.users, pytest.approx(first.preference.share, nan_ok=True))
    assert (points[1].users, points[1].share) == (last.counts.users, pytest.approx(last.preference.share))
    assert points[0].users == 20
