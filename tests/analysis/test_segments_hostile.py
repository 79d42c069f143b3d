"""Segment labels (issue 14, item 5): attribute names with ``"`` or ``\\`` work on SQLite, and boolean values
give the same labels on SQLite and PostgreSQL without merging with the numbers 1 and 0.

Expected labels are PostgreSQL's ``->>`` text of each JSON value (``true``/``false``, numbers as written,
strings unquoted, ``(none)`` for a missing key or JSON null), derived by hand from the attribute dicts below.
"""

from __future__ import annotations

from sqlmodel import Session, select

from abcore.analysis import queries
from abcore.experiments.lifecycle import create_experiment
from abcore.experiments.records import get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.store.tables import UserAssignment

ATTRIBUTES = {
    "u1": {'plan "quoted"': "pro", "back\\slash": "x", "flag": True, "n": 1, "o": 1.5},
    "u2": {'plan "quoted"': "free", "back\\slash": "y", "flag": False, "n": 0, "o": None},
    "u3": {"flag": 1, "n": True},
    "u4": {"flag": 0, "n": False, "o": "true"},
    "u5": {},
}
EXPECTED = {
    'plan "quoted"': {"u1": "pro", "u2": "free", "u3": "(none)", "u4": "(none)", "u5": "(none)"},
    "back\\slash": {"u1": "x", "u2": "y", "u3": "(none)", "u4": "(none)", "u5": "(none)"},
    "flag": {"u1": "true", "u2": "false", "u3": "1", "u4": "0", "u5": "(none)"},
    "n": {"u1": "1", "u2": "0", "u3": "true", "u4": "false", "u5": "(none)"},
    "o": {"u1": "1.5", "u2": "(none)", "u3": "(none)", "u4": "true", "u5": "(none)"},
}


def test_segment_labels_for_hostile_names_and_booleans(session: Session) -> None:
    exp = create_experiment(session=session, data=ExperimentCreate(name="seg", variants=[
        VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)]))
    variant = get_variants(session=session, experiment_id=exp.id)[0]  # type: ignore[arg-type]
    for user, attributes in ATTRIBUTES.items():
        session.add(UserAssignment(user_id=user, experiment_id=exp.id, variant_id=variant.id, attributes=attributes))
    session.commit()
    table = queries.ASSIGNMENTS
    for name, expected in EXPECTED.items():
        rows = session.execute(
            select(table.c.user_id, queries.segment_expression(name)).where(table.c.experiment_id == exp.id)
        ).all()
        assert {u: label for u, label in rows} == expected, name
