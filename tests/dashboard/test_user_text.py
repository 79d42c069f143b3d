"""Names typed by users are text on every page: no link, no remote image, no invisible character added."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore import experiments as ex
from abcore.assign import Assigner
from abcore.store.db import make_engine
from tests.dashboard.conftest import APP
from tests.dashboard.markdown_view import markdown_of, shown

IMAGE = "gr![i](http://attacker.invalid/i.png)"
EXPERIMENT = f"home.slate_v2 {IMAGE}"
VARIANT = f"v`2` {IMAGE}"
METRIC = f"m`x` {IMAGE}"


def _hostile_experiment(url: str) -> int:
    """A running experiment whose experiment, treatment, metric and segment names carry a remote image."""
    with Session(make_engine(url), expire_on_commit=False) as s:
        exp = ex.create_experiment(session=s, data=ex.ExperimentCreate(
            name=EXPERIMENT, description=f"See www.attacker.invalid or a@attacker.invalid {IMAGE}",
            hypothesis=IMAGE, primary_metric=METRIC,
            variants=[ex.VariantCreate(name="control", allocation_pct=50), ex.VariantCreate(name=VARIANT,
                                                                                            allocation_pct=50)]))
        ex.start_experiment(session=s, ref=exp.id)
    assigner = Assigner(url, timeout=10.0, cache_ttl=0.0)
    for i in range(60):
        assert assigner.assign(f"u{i}", EXPERIMENT, attributes={IMAGE: "x"}) is not None
        assigner.track(f"u{i}", EXPERIMENT, METRIC, float(i % 7))
    assigner.close()
    return int(exp.id)  # type: ignore[arg-type]


def _assert_text_only(at: AppTest, *names: str) -> None:
    sources = markdown_of(at)
    for source in sources:
        assert "\u2060" not in source, source  # nothing invisible: text copied from the page equals the name
        if source.startswith(("<div><svg", '<table class="abcore-table"')):  # HTML blocks: no Markdown inside
            assert "<a" not in source and "<img" not in source, source
            continue
        assert shown(source).links() == [], source
    visible = "\n".join(shown(s).text for s in sources if not s.startswith("<"))
    for name in names:
        assert name in visible, name  # shown as typed


def test_results_page_shows_hostile_names_as_text(store: str, open_results: Callable[..., AppTest]) -> None:
    exp_id = _hostile_experiment(store)
    at = open_results(str(exp_id), **{f"r_segment_{exp_id}": IMAGE})
    assert any(s.startswith("<div><svg") for s in markdown_of(at))  # the charts are drawn too
    _assert_text_only(at, EXPERIMENT, METRIC, f"By {IMAGE}")


def test_experiments_page_shows_hostile_names_as_text(store: str) -> None:
    _hostile_experiment(store)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    _assert_text_only(at, EXPERIMENT, f"{VARIANT} 50")


def test_a_missing_experiment_named_in_the_link_is_text(store: str, open_results: Callable[..., AppTest]) -> None:
    _hostile_experiment(store)
    at = open_results(f"www.attacker.invalid {IMAGE}")
    assert any(f"No experiment 'www.attacker.invalid {IMAGE}'" in shown(w.value).text for w in at.warning)
    _assert_text_only(at)
