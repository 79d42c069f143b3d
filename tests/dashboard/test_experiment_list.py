"""The experiment list (landing page): search, filters, sort, table view, progress, ship dialog.

Through ``streamlit.testing.v1.AppTest`` on a temporary SQLite store, plus the pure helpers of
``abcore.dashboard.views.experiment_list``. Expected numbers are derived by hand in the comments.
"""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser

import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore import experiments as ex
from abcore.dashboard import APP_PATH
from abcore.dashboard.views import experiment_list as xl
from abcore.store.db import make_engine
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, utcnow
from tests.factories import add_assignments, make_experiment, variant_ids

APP = str(APP_PATH)
TIMEOUT = 60


def _session(url: str) -> Session:
    return Session(make_engine(url), expire_on_commit=False)



def _make(url: str, name: str, *, description: str = "", owner: str = "", metric: str = "conversion",
          guardrails: tuple[str, ...] = (), variants: tuple[str, ...] = ("control", "treatment"),
          min_samples: int = 0, min_days: int = 0, status: str = "draft", started_days_ago: float | None = None,
          users: tuple[int, ...] = ()) -> int:
    """An experiment (equal split) with ``users[i]`` assigned users in variant i (assignment rows only)."""
    with _session(url) as s:
        exp = make_experiment(
            s, name, variants, status=status, actor=owner, description=description, created_by=owner,
            primary_metric=metric, guardrail_metrics=list(guardrails), min_samples_per_variant=min_samples,
            min_duration_days=min_days,
        )
        if started_days_ago is not None:
            row = s.get(Experiment, exp.id)
            row.started_at = utcnow() - timedelta(days=started_days_ago)
            s.add(row)
            s.commit()
        arms = variant_ids(s, int(exp.id)).values()
        add_assignments(s, int(exp.id), [(f"{name}-{v}-{k}", v) for v, n in zip(arms, users, strict=False) for k in range(n)])
        return int(exp.id)  # type: ignore[arg-type]


def _open() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def _card_ids(at: AppTest) -> list[int]:
    """Experiment ids of the cards drawn, in page order (every tab)."""
    keys = [b.key for b in at.button if b.key and b.key.startswith("act_")]
    ids: list[int] = []
    for key in keys:
        eid = int(key.rsplit("_", 1)[1])
        if eid not in ids:
            ids.append(eid)
    return ids


def _cards(at: AppTest) -> list[str]:
    """Names in the card headings (#### name), in page order."""
    return [m.value.split("&nbsp;")[0].removeprefix("#### ").strip() for m in at.markdown if m.value.startswith("#### ")]


# --------------------------------------------------------------------------- pure helpers


class _TableCells(HTMLParser):
    """The cells of an abcore.dashboard.views.html.html_table: rows of (text, href or None)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str | None]]] = []
        self._cell: list[str] | None = None
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell, self._href = [], None
        elif tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(("".join(self._cell), self._href))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table(at: AppTest) -> dict[str, dict[str, str]]:
    """The table view as {experiment name: {column: shown text}} (links as ``text -> href``)."""
    markup = next(m.value for m in at.markdown if "abcore-table" in m.value)
    parser = _TableCells()
    parser.feed(markup)
    head, *body = parser.rows
    columns = [text for text, _ in head]
    return {row[0][0]: {c: text + (f" -> {href}" if href else "") for c, (text, href) in zip(columns, row, strict=True)}
            for row in body}


def test_progress_days_left_and_planned_size_by_hand() -> None:
    now = utcnow()
    assert xl.planned_users(500, 3) == 1500  # 500 per variant x 3 variants
    assert xl.sample_progress(600, 1500) == pytest.approx(0.4)  # 600 / 1500
    assert xl.sample_progress(10, 0) is None
    assert xl.days_left(14, now - timedelta(days=2.5), now=now) == 12  # ceil(14 - 2.5)
    assert xl.days_left(14, now - timedelta(days=20), now=now) == 0
    assert xl.days_left(14, None, now=now) == 14  # not started: the whole minimum
    assert xl.days_left(0, now, now=now) is None
    # stopped after 3 days: the clock stops with it, ceil(7 - 3) = 4
    assert xl.days_left(7, now - timedelta(days=10), now - timedelta(days=7), now=now) == 4
    with pytest.raises(ValueError, match="Unknown sort key"):
        xl.sort_items([], "colour")


# --------------------------------------------------------------------------- the page


def test_search_filters_by_status_owner_and_metric(store: str) -> None:
    a = _make(store, "Checkout copy", description="Shorter button text", owner="ana", metric="purchase")
    b = _make(store, "Ranker v2", description="Two-tower ranker on the homepage", owner="bo", status="running")
    c = _make(store, "Homepage banner", owner="ana", guardrails=("purchase",), status="running")
    at = _open()
    assert sorted(_card_ids(at)) == sorted([a, b, c])
    at.text_input(key="x_search").set_value("HOMEPAGE").run()  # name of c, description of b, any case
    assert sorted(_card_ids(at)) == sorted([b, c])
    at.text_input(key="x_search").set_value("ranker homepage").run()  # every word must appear
    assert _card_ids(at) == [b]
    at.text_input(key="x_search").set_value("").run()
    at.multiselect(key="x_owner").set_value(["ana"]).run()
    assert sorted(_card_ids(at)) == sorted([a, c])
    at.multiselect(key="x_metric").set_value(["purchase"]).run()  # primary of a, guardrail of c
    assert sorted(_card_ids(at)) == sorted([a, c])
    at.multiselect(key="x_status").set_value(["running"]).run()
    assert _card_ids(at) == [c]
    assert [t.label for t in at.tabs] == ["▶️ Running (1)"]  # only the chosen statuses get a tab
    assert any("Showing 1 of 3 experiments" in m.value for m in at.caption)
    at.multiselect(key="x_owner").set_value(["bo"]).run()
    assert _card_ids(at) == []
    assert any("No experiment in this tab matches" in i.value for i in at.info)


def test_sort_by_start_participants_and_last_activity(store: str) -> None:
    old = _make(store, "old", status="running", started_days_ago=10, users=(5, 5))
    new = _make(store, "new", status="running", started_days_ago=1, users=(50, 40))
    draft = _make(store, "draft", users=())
    at = _open()
    assert _card_ids(at) == [new, old, draft]  # tabs in status order: running (newest first), then draft
    at.multiselect(key="x_status").set_value(["running"]).run()
    at.selectbox(key="x_sort").set_value("start").run()
    assert _card_ids(at) == [new, old]  # started 1 day ago before 10 days ago
    at.toggle(key="x_table").set_value(True).run()
    at.multiselect(key="x_status").set_value([]).run()
    assert list(_table(at)) == ["new", "old", "draft"]  # never started: last
    at.selectbox(key="x_sort").set_value("participants").run()
    assert list(_table(at)) == ["new", "old", "draft"]  # 90 > 10 > 0
    with _session(store) as s:  # an event for "old" now: the most recent activity
        s.add(ExperimentEvent(experiment_id=old, user_id="x", event_type="exposure", ts=utcnow() + timedelta(hours=1)))
        s.commit()
    at.selectbox(key="x_sort").set_value("activity").run()
    assert list(_table(at))[0] == "old"


def test_table_view_progress_and_days_left(store: str) -> None:
    # 3 variants x 200 planned = 600; 90 + 60 + 30 = 180 assigned -> 30 %
    eid = _make(store, "planned", variants=("control", "b", "c"), min_samples=200, min_days=14,
                status="running", started_days_ago=3.5, users=(90, 60, 30))
    _make(store, "unplanned")
    at = _open()
    bars = at.get("progress")
    assert len(bars) == 1 and bars[0].proto.value == 30  # percent
    assert "180 of 600 planned users (30 %)" in bars[0].proto.text
    assert any("11 days left of the minimum 14" in c.value for c in at.caption)  # ceil(14 - 3.5)
    assert any("No planned sample size" in c.value for c in at.caption)
    at.toggle(key="x_table").set_value(True).run()
    assert not at.exception
    assert not _cards(at)  # the table replaces the cards
    table = _table(at)
    assert table["planned"]["Users"] == "180" and table["planned"]["Planned"] == "600"
    assert table["planned"]["Progress"] == "30 %"
    assert table["planned"]["Days left"] == "11"
    assert table["planned"]["Results"] == f"📊 Results -> results?experiment={eid}"
    # a missing figure is a dash, never the literal "None" (a draft without a plan, never started)
    assert table["unplanned"]["Planned"] == table["unplanned"]["Progress"] == table["unplanned"]["Started"] == "–"
    assert not any("None" in text for row in table.values() for text in row.values())


def test_archived_experiments_only_with_show_archived(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = _make(store, "kept")
    gone = _make(store, "gone")
    real = xl.build_items

    def with_archive(experiments: list, overview: dict, variants: dict) -> list:
        # mark one row archived on the instance (the list reads Experiment.archived_at)
        for e in experiments:
            if e.id == gone:
                object.__setattr__(e, "archived_at", utcnow())
        return real(experiments, overview, variants)

    monkeypatch.setattr(xl, "build_items", with_archive)
    at = _open()
    assert _card_ids(at) == [kept]
    at.toggle(key="x_archived").set_value(True).run()
    assert sorted(_card_ids(at)) == sorted([kept, gone])
    assert any("Archived" in m.value for m in at.markdown if m.value.startswith("#### gone"))


def _ship_data(url: str) -> tuple[int, dict[str, int]]:
    """A completed experiment: 'good' and 'bad' both convert better than control; 'bad' breaks 'errors'.

    Per arm 1,000 exposed users. conversion: control 10 %, good 25 %, bad 30 %; errors (a 0/1 guardrail; without a
    metric definition a guardrail counts lower as better): control and good 5 %, bad 30 %. By hand, the standard
    error of a difference of two such rates is at most sqrt(.3*.7/1000 + .1*.9/1000) ~ 0.017, so every difference
    is more than 8 standard errors (p < 1e-15 even after Holm): good is 'better' on conversion, bad 'worse' on
    errors, so the verdict ships good (bad is excluded by its guardrail).
    """
    eid = _make(url, "ship me", variants=("control", "good", "bad"), guardrails=("errors",), status="completed")
    with _session(url) as s:
        variants = {v.name: int(v.id) for v in ex.get_variants(session=s, experiment_id=eid)}  # type: ignore[arg-type]
        started = s.get(Experiment, eid).started_at
        ts = started + timedelta(seconds=1)
        rows: list = []
        plan = {"control": (100, 50), "good": (250, 50), "bad": (300, 300)}
        for name, (converted, errors) in plan.items():
            vid = variants[name]
            for k in range(1000):
                user = f"{name}-{k}"
                rows.append(UserAssignment(user_id=user, experiment_id=eid, variant_id=vid, assigned_at=started))
                rows.append(ExperimentEvent(experiment_id=eid, variant_id=vid, user_id=user, event_type="exposure", ts=ts))
                if k < converted:
                    rows.append(ExperimentEvent(experiment_id=eid, variant_id=vid, user_id=user, event_type="conversion",
                                                metric_name="conversion", value=1.0, ts=ts))
                if k < errors:
                    rows.append(ExperimentEvent(experiment_id=eid, variant_id=vid, user_id=user, event_type="conversion",
                                                metric_name="errors", value=1.0, ts=ts))
        s.add_all(rows)
        s.commit()
    return eid, variants


def test_ship_dialog_defaults_to_the_recommendation_and_warns_on_a_broken_guardrail(store: str) -> None:
    eid, variants = _ship_data(store)
    at = _open()
    at.button(key=f"act_ship_{eid}").click().run()
    assert not at.exception, at.exception
    box = at.selectbox(key=f"ship_variant_{eid}")
    assert box.value == variants["good"]
    assert any("Recommendation" in c.value and "good" in c.value for c in at.caption)
    assert not [e for e in at.error if "guardrail" in e.value]
    box.set_value(variants["bad"]).run()
    warnings = [e.value for e in at.error if "guardrail" in e.value]
    assert len(warnings) == 1 and "guardrail errors:" in warnings[0] and "bad" in warnings[0]
    at.button(key=f"confirm_{eid}").click().run()  # a warning, not a refusal: the user decides
    with _session(store) as s:
        assert ex.get_experiment(session=s, ref=eid).winner_variant_id == variants["bad"]


def test_guardrail_data_is_significant_by_statsmodels() -> None:
    """The premise of the ship-dialog test, from an independent source (statsmodels' z-test)."""
    from statsmodels.stats.proportion import proportions_ztest

    _, p_good = proportions_ztest([250, 100], [1000, 1000])  # conversion: good vs control
    _, p_bad = proportions_ztest([300, 50], [1000, 1000])  # errors: bad vs control
    assert p_good < 1e-10 and p_bad < 1e-10


def test_each_card_links_to_the_edit_page(store: str) -> None:
    """Every card links to the edit page (``edit?id=<id>``), which is not in the menu."""
    eid = _make(store, "editable")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    links = [e.proto for e in at.get("page_link")]
    edit = [p for p in links if p.label == "Edit / clone"]
    assert len(edit) == 1 and edit[0].page.endswith("edit") and edit[0].query_string == f"id={eid}"
    assert "Edit" not in {p.label for p in links if p.page_script_hash and p.label != "Edit / clone"}  # not in the menu
    at.toggle(key="x_table").set_value(True).run()
    assert _table(at)["editable"]["Edit"] == f"✏️ Edit -> edit?id={eid}"
