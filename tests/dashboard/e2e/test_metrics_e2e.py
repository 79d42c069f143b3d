"""End to end in a real browser: define the metric ``latency_ms`` (lower is better) on the Metrics
page, pick it as a guardrail in the create form, feed the experiment demo-like data through
abcore.assign and read its direction on the results page.

Server fixtures: tests/dashboard/e2e/conftest.py. Screenshots go to ``tests/artifacts/`` (git-ignored).
The walk-through is a sequence of named steps, each taking the page and returning what the next needs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlmodel import Session

from abcore import assign as abassign
from abcore import experiments as ex
from abcore.metrics import get_metric
from abcore.store.db import init_db, make_engine
from tests.dashboard.e2e.actions import choose, settle, type_text
from tests.dashboard.e2e.browser import ARTIFACTS, launch

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

WAIT_MS = 90_000
USERS = 200
NAME = "E2E latency guard"


@pytest.fixture
def server(tmp_path: Path, need_browser: Callable[[], None],
           dashboard_server: Callable[..., AbstractContextManager[str]]) -> Iterator[tuple[str, str]]:
    """A dashboard on a free port over a fresh SQLite file: yields (base URL, database URL)."""
    need_browser()
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    init_db(make_engine(url)).dispose()
    with dashboard_server(url, tmp_path) as base:
        yield base, url


def _define_latency_ms(page: Page, base: str, db_url: str) -> None:
    """Define ``latency_ms`` on the Metrics page: a mean per event (the latency of a request), lower is better;
    the table and the store show it."""
    from playwright.sync_api import expect

    page.goto(f"{base}/metrics")
    expect(page.get_by_role("heading", name="Metrics")).to_be_visible()
    type_text(page, "md_name", "latency_ms")
    choose(page, "md_kind", "Mean per event")
    expect(page.locator(".st-key-md_cap")).to_have_count(0)  # a per-event mean is not capped per user
    page.locator(".st-key-md_direction").get_by_text("lower is better").click()
    settle(page)
    submit = page.locator(".st-key-md_submit button")
    expect(submit).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "metrics_define.png"), full_page=True)
    submit.click()
    table = page.locator(".st-key-mt_table")
    expect(table).to_contain_text("latency_ms")
    expect(table).to_contain_text("lower is better")
    with Session(make_engine(db_url)) as s:
        row = get_metric(session=s, name="latency_ms")
    assert (row.kind, row.direction) == ("event_mean", "decrease")


def _create_with_the_guardrail(page: Page, base: str, db_url: str) -> int:
    """Create an experiment with ``latency_ms`` as a guardrail (the picker shows its direction) and start
    it in the store; returns its id."""
    from playwright.sync_api import expect

    page.goto(f"{base}/create")
    type_text(page, "c_name", NAME)
    choose(page, "c_guardrails", "latency_ms — lower is better")
    page.keyboard.press("Escape")  # close the dropdown
    expect(page.locator(".st-key-c_guardrails")).to_contain_text("latency_ms — lower is better")
    create = page.locator(".st-key-create_experiment button")
    expect(create).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "create_guardrail.png"), full_page=True)
    settle(page)
    create.click()
    expect(page.get_by_role("tab", name="Draft (1)")).to_be_visible()
    with Session(make_engine(db_url), expire_on_commit=False) as s:
        experiment = ex.get_experiment(session=s, ref=NAME)
        assert experiment.guardrail_metrics == ["latency_ms"]
        ex.start_experiment(session=s, ref=experiment.id, actor="e2e")
    return int(experiment.id)  # type: ignore[arg-type]


def _feed_demo_like_data(db_url: str) -> None:
    """Demo-like data (abcore.demo's shape): conversions, and a lognormal serving latency per request."""
    assigner = abassign.configure(db_url, timeout=10.0, cache_ttl=0.0)
    rng = random.Random(9)
    for i in range(USERS):
        user = f"lat-user-{i}"
        a = assigner.assign(user, NAME)
        assert a is not None
        if rng.random() < (0.12 if a.is_control else 0.15):
            assigner.track(user, NAME, "conversion")
        median = 120.0 if a.is_control else 105.0
        assigner.track(user, NAME, "latency_ms", round(rng.lognormvariate(math.log(median), 0.35), 1))
    abassign.flush()


def _read_the_directions(page: Page, base: str, exp_id: int) -> None:
    """The results page says which way is better for the guardrail and for the primary metric."""
    from playwright.sync_api import expect

    page.goto(f"{base}/results?experiment={exp_id}")
    expect(page.get_by_text("latency_ms · guardrail")).to_be_visible()
    guard = page.locator(".st-key-r_table_latency_ms")
    expect(guard).to_contain_text("Direction: ↓ lower is better")
    expect(guard.locator("table")).to_be_visible()
    expect(page.locator(".st-key-r_table_conversion")).to_contain_text("Direction: ↑ higher is better")
    page.screenshot(path=str(ARTIFACTS / "results_guardrail.png"), full_page=True)


def test_define_a_guardrail_metric_and_see_its_direction_on_the_results(server: tuple[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, db_url = server
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        page.goto(base)  # the router first
        expect(page.get_by_role("heading", name="Experiments")).to_be_visible()
        _define_latency_ms(page, base, db_url)
        exp_id = _create_with_the_guardrail(page, base, db_url)
        _feed_demo_like_data(db_url)
        _read_the_directions(page, base, exp_id)
        browser.close()
