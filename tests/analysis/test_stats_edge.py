"""One user per arm: 0/1 conversions against 1/1 still reports the observed difference.

What is defined there, and why:
* rates 0 and 1 and the difference +1.0 are plain counts (0/1 and 1/1), so they are reported;
* the relative lift is undefined (the control rate is 0: division by zero);
* the p-value and the interval are NaN, with the reason in ``error``: abcore's z-test uses the unpooled
  (Wald) variance p(1-p)/n for both (DESIGN.md, statistics conventions), which is 0 in each arm here
  (p is 0 or 1), so z = 1/0 and the interval would have zero width -- statsmodels'
  ``confint_proportions_2indep(0, 1, 1, 1, method="wald")`` returns (1.0, 1.0), a "certain" difference
  from two users, which is why abcore refuses the large-sample test below 2 users per arm. The data carry
  no evidence at all: Fisher's exact test (``scipy.stats.fisher_exact([[0, 1], [1, 0]])``) gives p = 1.0.
"""

from __future__ import annotations

import math
from datetime import timedelta

import scipy.stats as sps
from sqlmodel import Session
from statsmodels.stats.proportion import confint_proportions_2indep

from abcore.analysis.pipeline import analyze
from abcore.stats import proportion_test
from tests.factories import T0, add_data, completed_experiment


def test_one_user_per_arm_reports_the_difference() -> None:
    result = proportion_test(0, 1, 1, 1)
    assert (result.control, result.treatment, result.diff) == (0.0, 1.0, 1.0)  # 0/1, 1/1, 1 - 0 by hand
    assert math.isnan(result.lift)  # control rate 0
    assert math.isnan(result.p_value) and math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert not result.significant
    assert result.error is not None and "at least 2 users" in result.error
    # The references quoted in the module docstring.
    assert tuple(confint_proportions_2indep(1, 1, 0, 1, method="wald", compare="diff")) == (1.0, 1.0)
    assert sps.fisher_exact([[0, 1], [1, 0]]).pvalue == 1.0
    # One user in one arm only: that arm's rate is still shown.
    partial = proportion_test(3, 10, 1, 1)
    assert (partial.control, partial.treatment) == (0.3, 1.0) and math.isnan(partial.p_value)
    assert math.isclose(partial.diff, 0.7)


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
    assert click.test.diff == 1.0 and math.isnan(click.test.p_value)
