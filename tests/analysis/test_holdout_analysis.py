"""A holdout is analysed like any experiment: ``holdout`` (the control) against ``exposed``, checked by hand with
numpy on the raw per-user rows (unpooled z-test of two proportions), on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sqlmodel import Session

from abcore.analysis.pipeline import analyze
from tests.factories import add_data, completed_experiment, conversion, exposure


def test_a_holdout_is_analysed_holdout_against_exposed(session: Session) -> None:
    rng = np.random.default_rng(5)
    exp, arms = completed_experiment(session, variants=(("holdout", 10.0), ("exposed", 90.0)), kind="holdout",
                                     name="q3_holdout", primary_metric="click")
    arm = rng.random(3000) >= 0.1  # True: exposed
    converted = rng.random(3000) < np.where(arm, 0.12, 0.10)
    users = [f"u{i}" for i in range(3000)]
    add_data(
        session, exp,
        [(u, arms["exposed" if arm[i] else "holdout"], {}) for i, u in enumerate(users)],
        [exposure(u) for u in users] + [conversion(u, "click", 1.0) for i, u in enumerate(users) if converted[i]],
    )
    result = analyze(exp.id, session=session, correction="none", method="frequentist").result("click")
    assert (result.control_variant, result.variant) == ("holdout", "exposed")
    p0, p1 = converted[~arm].mean(), converted[arm].mean()  # numpy on the raw rows
    n0, n1 = int((~arm).sum()), int(arm.sum())
    se = np.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    assert (result.control_users, result.users) == (n0, n1)
    assert result.control_value == pytest.approx(p0) and result.value == pytest.approx(p1)
    assert result.test.p_value == pytest.approx(2 * sps.norm.sf(abs(p1 - p0) / se), rel=1e-9)
