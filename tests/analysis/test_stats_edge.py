"""One user per arm: 0/1 conversions against 1/1 gives the pooled z-test's finite answer.

What is defined there, and why:
* rates 0 and 1 and the difference +1.0 are plain counts (0/1 and 1/1), so they are reported;
* the relative lift is undefined (the control rate is 0: division by zero);
* the test: abcore's z-test uses the unpooled (Wald) variance p(1-p)/n for the statistic and the interval
  whenever it is positive; here it is 0 in each arm (p is 0 or 1), which would claim a certain difference
  from two users (statsmodels ``confint_proportions_2indep(1, 1, 0, 1, method="wald")`` returns (1.0, 1.0)).
  When the Wald variance is 0 the pooled variance p(1-p)(1/n_a + 1/n_b), p = 1/2, is used for both the
  statistic and the interval: z = 1 / sqrt(0.5) = 1.414, p = 0.157, statsmodels' pooled
  ``proportions_ztest([1, 0], [1, 1])`` (its default variance), and the interval 1 -/+ 1.96 sqrt(0.5)
  covers 0 as the p-value says.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import scipy.stats as sps
from sqlmodel import Session
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from abcore.analysis.pipeline import analyze
from abcore.stats import proportion_test
from tests.factories import T0, add_data, completed_experiment

# statsmodels' pooled two-proportion z-test of 1/1 against 0/1
POOLED_Z, POOLED_P = (float(v) for v in proportions_ztest([1, 0], [1, 1]))


def test_one_user_per_arm_gives_the_pooled_test() -> None:
    result = proportion_test(0, 1, 1, 1)
    assert (result.control, result.treatment, result.diff) == (0.0, 1.0, 1.0)  # 0/1, 1/1, 1 - 0 by hand
    assert math.isnan(result.lift)  # control rate 0
    assert result.statistic == pytest.approx(POOLED_Z, rel=1e-12) and result.p_value == pytest.approx(POOLED_P, rel=1e-12)
    assert result.p_value == pytest.approx(0.157, abs=5e-4)
    half = sps.norm.ppf(0.975) * math.sqrt(0.5)  # pooled standard error sqrt(p (1 - p) (1 + 1)), p = 1/2, by hand
    assert (result.ci_low, result.ci_high) == (pytest.approx(1 - half), pytest.approx(1 + half))
    assert result.ci_low < 0 and not result.significant
    assert result.error is not None and "lift" in result.error
    # The Wald interval the unpooled variance would give: a "certain" difference.
    assert tuple(confint_proportions_2indep(1, 1, 0, 1, method="wald", compare="diff")) == (1.0, 1.0)
    # pooled=True gives the same (the same pooled variance for the statistic).
    assert proportion_test(0, 1, 1, 1, pooled=True).p_value == pytest.approx(POOLED_P, rel=1e-12)
    # One user in one arm only: the Wald variance of the other arm is positive, so it is used.
    partial = proportion_test(3, 10, 1, 1)
    assert (partial.control, partial.treatment) == (0.3, 1.0) and math.isclose(partial.diff, 0.7)
    wald_p = 2 * sps.norm.sf(0.7 / math.sqrt(0.3 * 0.7 / 10))  # Wald z by hand
    assert partial.p_value == pytest.approx(wald_p, rel=1e-12)


def test_all_or_nothing_arms_use_the_pooled_variance() -> None:
    # 0/50 against 50/50: statsmodels proportions_ztest (pooled) gives z = 10; Wald's variance would be 0.
    z, p = proportions_ztest([50, 0], [50, 50])
    result = proportion_test(0, 50, 50, 50)
    assert result.statistic == pytest.approx(float(z), rel=1e-12) and result.p_value == pytest.approx(float(p), rel=1e-9)
    assert result.significant and result.ci_low > 0
    # No variation at all (0 % in both arms): still undefined.
    assert math.isnan(proportion_test(0, 50, 0, 50).p_value)


def test_analysis_reports_the_difference_with_one_user_per_arm(session: Session) -> None:
    exp, arms = completed_experiment(session)
    add_data(session, exp, [("a1", arms["A"], {}), ("b1", arms["B"], {})], [
        {"user_id": "a1", "variant_id": arms["A"].id, "event_type": "exposure"},
        {"user_id": "b1", "variant_id": arms["B"].id, "event_type": "exposure"},
        {"user_id": "b1", "variant_id": arms["B"].id, "event_type": "conversion", "metric_name": "click", "value": 1.0,
         "ts": T0 + timedelta(hours=2)},
    ])
    click = analyze(exp.id, session=session, correction="none").result("click")
    assert (click.control_users, click.users, click.control_conversions, click.conversions) == (1, 1, 0, 1)
    assert click.test.diff == 1.0 and click.test.p_value == pytest.approx(POOLED_P, rel=1e-12)
