"""abcore.dashboard.views.forms: number, percent and day formatting, status colours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from abcore.dashboard.views import forms


def test_status_colours_are_consistent_and_cover_every_status() -> None:
    assert set(forms.STATUS_COLORS) == set(forms.STATUS_ORDER)
    assert len(set(forms.STATUS_COLORS.values())) == len(forms.STATUS_COLORS)
    assert forms.status_badge("running") == ":green-badge[▶️ Running]"
    assert forms.status_color("unknown") == "gray"


def test_days_running() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert forms.days_running(None) is None
    assert forms.days_running(start, start + timedelta(days=3, hours=12)) == 3.5
    assert forms.days_running(start, now=start + timedelta(hours=6)) == 0.25
    assert forms.format_days(3.5) == "3 days"
    assert forms.format_days(1.2) == "1 day"
    assert forms.format_days(0.25) == "< 1 day"
    assert forms.format_days(None) == "not started"
