"""Approvals and the per-store setting, on SQLite and PostgreSQL; the role ``approver``; the HTTP start rule."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore import experiments as ex
from abcore.access.api_keys import create_api_key
from abcore.access.users import AuthConfigError, can_approve, can_edit, hash_password, load_users
from abcore.api import ApiSettings, create_app
from abcore.experiments import lifecycle


def _draft(session: Session, name: str = "exp") -> int:
    data = ex.ExperimentCreate(
        name=name,
        variants=[ex.VariantCreate(name="control", allocation_pct=50), ex.VariantCreate(name="treatment", allocation_pct=50)],
    )
    return int(ex.create_experiment(session=session, data=data, actor="author").id)  # type: ignore[arg-type]


def _actions(session: Session, experiment_id: int | None = None) -> list[str]:
    return [a.action for a in reversed(ex.audit_log(session=session, experiment_id=experiment_id))]


def test_the_setting_is_off_by_default_stored_and_audited(session: Session) -> None:
    assert ex.require_approval(session=session) is False
    assert ex.set_require_approval(session=session, required=True, actor="admin") is True
    assert ex.require_approval(session=session) is True
    ex.set_require_approval(session=session, required=False, actor="admin")
    ex.set_require_approval(session=session, required=True, actor="admin")
    entries = [a for a in reversed(ex.audit_log(session=session)) if a.action == "set_setting"]
    assert [(a.details["before"], a.details["after"]) for a in entries] == [(False, True), (True, False), (False, True)]
    assert session.execute(text("SELECT COUNT(*) FROM ab_settings")).scalar_one() == 1
    with pytest.raises(ex.ExperimentError, match="must be a bool"):
        ex.set_setting(session=session, key=ex.REQUIRE_APPROVAL, value="yes")
    with pytest.raises(ex.ExperimentError, match="Unknown setting"):
        ex.get_setting(session=session, key="colour")


def test_an_unapproved_draft_cannot_start_when_approvals_are_required(session: Session) -> None:
    exp_id = _draft(session)
    ex.set_require_approval(session=session, required=True, actor="admin")
    with pytest.raises(ex.ApprovalRequired, match="requires an approval before a draft starts, and nobody approved"):
        ex.start_experiment(session=session, ref=exp_id, actor="ed")
    assert ex.get_experiment(session=session, ref=exp_id).status == "draft"
    ex.request_approval(session=session, ref=exp_id, actor="ed", comment="please")
    with pytest.raises(ex.ApprovalRequired, match="waiting for an approver"):
        ex.start_experiment(session=session, ref=exp_id, actor="ed")
    approved = ex.approve_experiment(session=session, ref=exp_id, actor="boss", comment="looks right")
    assert (approved.approval_status, approved.approved_by) == ("approved", "boss")
    assert approved.approved_at is not None
    started = ex.start_experiment(session=session, ref=exp_id, actor="ed")
    assert started.status == "running"
    assert _actions(session, exp_id) == ["create", "request_approval", "approve", "start"]
    approve = next(a for a in ex.audit_log(session=session, experiment_id=exp_id) if a.action == "approve")
    assert approve.details["comment"] == "looks right"
    # what was approved is kept: the variants and split, as created
    assert [(v["name"], v["allocation_pct"]) for v in approve.details["configuration"]["variants"]] == [
        ("control", 50.0), ("treatment", 50.0)]


def test_without_the_setting_drafts_start_unapproved(session: Session) -> None:
    exp_id = _draft(session)
    assert ex.start_experiment(session=session, ref=exp_id).status == "running"


@pytest.mark.parametrize("edit", ["update_experiment", "update_allocations", "set_traffic_allocation", "set_auto_stop"])
def test_an_edit_after_approval_withdraws_it(session: Session, edit: str) -> None:
    exp_id = _draft(session)
    ex.set_require_approval(session=session, required=True)
    ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    if edit == "update_experiment":
        ex.update_experiment(session=session, ref=exp_id, changes={"hypothesis": "changed"}, actor="ed")
    elif edit == "update_allocations":
        ex.update_allocations(session=session, ref=exp_id, allocations={"control": 40, "treatment": 60}, actor="ed")
    elif edit == "set_traffic_allocation":
        ex.set_traffic_allocation(session=session, ref=exp_id, traffic_allocation=0.5, actor="ed")
    else:
        ex.set_auto_stop(session=session, ref=exp_id, auto_stop={"srm": "pause"}, actor="ed")
    state = ex.approval_state(session=session, ref=exp_id)
    assert (state.status, state.current, state.can_start) == ("", False, False)
    assert "approval_withdrawn" in _actions(session, exp_id)
    with pytest.raises(ex.ApprovalRequired):
        ex.start_experiment(session=session, ref=exp_id)
    ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    assert ex.start_experiment(session=session, ref=exp_id).status == "running"


def test_an_edit_behind_abcores_back_also_voids_the_approval(session: Session) -> None:
    exp_id = _draft(session)
    ex.set_require_approval(session=session, required=True)
    ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    session.execute(text("UPDATE ab_experiment_variants SET allocation_pct = 90 WHERE name = 'control'"))
    session.execute(text("UPDATE ab_experiment_variants SET allocation_pct = 10 WHERE name = 'treatment'"))
    session.commit()
    with pytest.raises(ex.ApprovalRequired, match="changed after boss approved it"):
        ex.start_experiment(session=session, ref=exp_id)


def test_reject_needs_a_comment_and_blocks_the_start_until_approved(session: Session) -> None:
    exp_id = _draft(session)
    ex.set_require_approval(session=session, required=True)
    with pytest.raises(ex.ExperimentError, match="without a comment"):
        ex.reject_experiment(session=session, ref=exp_id, actor="boss", comment=" ")
    with pytest.raises(ex.ExperimentError, match="anonymously"):
        ex.approve_experiment(session=session, ref=exp_id, actor="")
    ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    rejected = ex.reject_experiment(session=session, ref=exp_id, actor="boss2", comment="split too risky")
    assert (rejected.approval_status, rejected.approved_by) == ("rejected", None)
    with pytest.raises(ex.ApprovalRequired, match=r"boss2 rejected it \(split too risky\)"):
        ex.start_experiment(session=session, ref=exp_id)
    with pytest.raises(ex.InvalidTransition, match="already rejected"):
        ex.reject_experiment(session=session, ref=exp_id, actor="boss2", comment="again")
    ex.request_approval(session=session, ref=exp_id, actor="ed")
    ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    with pytest.raises(ex.InvalidTransition, match="already approved"):
        ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    ex.start_experiment(session=session, ref=exp_id)
    with pytest.raises(ex.InvalidTransition, match="approvals are for drafts"):
        ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    assert _actions(session, exp_id) == ["create", "approve", "reject", "request_approval", "approve", "start"]


def test_a_clone_starts_without_the_originals_approval(session: Session) -> None:
    exp_id = _draft(session)
    ex.set_require_approval(session=session, required=True)
    ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    copy = ex.clone_experiment(session=session, ref=exp_id, name="copy")
    assert (copy.approval_status, copy.approved_by) == ("", None)
    with pytest.raises(ex.ApprovalRequired):
        ex.start_experiment(session=session, ref=copy.id)


# --------------------------------------------------------------------------- the role


def test_the_approver_role_is_configured_like_the_others() -> None:
    users = load_users(secrets={}, env={"ABCORE_USERS": json.dumps({
        "ann": {"password_hash": hash_password("a-secret"), "role": "approver"},
        "ed": {"password_hash": hash_password("e-secret"), "role": "editor"},
        "vi": {"password_hash": hash_password("v-secret"), "role": "viewer"},
    })})
    assert [(can_edit(users[n], users), can_approve(users[n], users)) for n in ("ann", "ed", "vi")] == [
        (True, True), (True, False), (False, False)]
    assert can_approve(None, {}) is True  # open mode: everyone
    assert can_approve(None, users) is False
    with pytest.raises(AuthConfigError, match="approver"):
        load_users(secrets={}, env={"ABCORE_USERS": json.dumps({"x": {"password_hash": "h", "role": "boss"}})})


# --------------------------------------------------------------------------- HTTP


def test_the_http_start_enforces_the_same_rule(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session:
        exp_id = _draft(session)
        ex.set_require_approval(session=session, required=True)
        key = create_api_key(session=session, name="ed", role="editor", rate_limit=0)[1]
    app = create_app(engine, settings=ApiSettings(key_cache_ttl=0.0))
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(app) as client:
        refused = client.put(f"/api/v1/experiments/{exp_id}/status", json={"status": "running"}, headers=headers)
        assert refused.status_code == 409, refused.text
        assert "requires an approval" in refused.json()["detail"]
        with Session(engine, expire_on_commit=False) as session:
            ex.approve_experiment(session=session, ref=exp_id, actor="boss")
        started = client.put(f"/api/v1/experiments/{exp_id}/status", json={"status": "running"}, headers=headers)
        assert started.status_code == 200 and started.json()["status"] == "running"


def test_an_approval_withdrawn_during_the_start_is_not_started(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The approval check and the start are one atomic update: a rejection saved by another session
    between abcore's check and its write leaves the draft a draft."""
    with Session(engine, expire_on_commit=False) as session:
        exp_id = _draft(session)
        ex.set_require_approval(session=session, required=True)
        ex.approve_experiment(session=session, ref=exp_id, actor="boss")
    checked = ex.approval_problem

    def check_then_reject(**kwargs: object) -> str | None:
        answer = checked(**kwargs)  # type: ignore[arg-type]
        with Session(engine, expire_on_commit=False) as other:  # someone else rejects it right now
            ex.reject_experiment(session=other, ref=exp_id, actor="boss2", comment="wait")
        return answer

    monkeypatch.setattr(lifecycle, "approval_problem", check_then_reject)  # where start_experiment looks it up
    with Session(engine, expire_on_commit=False) as session:
        with pytest.raises(ex.ApprovalRequired, match="withdrawn or it was edited just now"):
            ex.start_experiment(session=session, ref=exp_id, actor="ed")
        assert ex.get_experiment(session=session, ref=exp_id).status == "draft"
        assert "start" not in _actions(session, exp_id)


def test_four_eyes_the_requester_and_the_last_editor_cannot_approve(session: Session) -> None:
    exp_id = _draft(session)  # written by "author"
    with pytest.raises(ex.ExperimentError, match="another approver must approve it"):
        ex.approve_experiment(session=session, ref=exp_id, actor="author")
    ex.update_experiment(session=session, ref=exp_id, changes={"hypothesis": "h"}, actor="ed")
    ex.request_approval(session=session, ref=exp_id, actor="rita")
    assert ex.approval_authors(session=session, ref=exp_id) == {"ed", "rita"}
    for actor in ("ed", "rita"):
        with pytest.raises(ex.ExperimentError, match="four eyes"):
            ex.approve_experiment(session=session, ref=exp_id, actor=actor)
    assert ex.approve_experiment(session=session, ref=exp_id, actor="author").approved_by == "author"
    ex.reject_experiment(session=session, ref=exp_id, actor="boss", comment="no")
    # after a decision, an old request no longer counts; the last editor still does
    assert ex.approval_authors(session=session, ref=exp_id) == {"ed"}
    approved = ex.approve_experiment(session=session, ref=exp_id, actor="ed", allow_self_approval=True)
    assert approved.approved_by == "ed"
