"""The models page through AppTest: versions, JSON errors next to the field, nothing typed is lost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore.dashboard import APP_PATH
from abcore.experiments.ml_models import create_model, list_models
from abcore.store.db import make_engine
from tests.dashboard.markdown_view import text

APP = str(APP_PATH)


def _models(url: str) -> list[tuple[str, str]]:
    with Session(make_engine(url)) as s:
        return sorted((m.name, m.version) for m in list_models(session=s, active_only=False))


def _open() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    return at


def _walk(node: Any) -> Iterator[Any]:
    """Every node of the rendered tree in page order."""
    yield node
    children = getattr(node, "children", {}) or {}
    for key in sorted(children):
        yield from _walk(children[key])


def _order(at: AppTest) -> list[str]:
    """Keys of keyed widgets and 'error: <text>' of error boxes, in page order."""
    out = []
    for node in _walk(at._tree):
        if getattr(node, "type", None) == "error" or type(node).__name__ == "Error":
            out.append(f"error: {node.value}")
        elif getattr(node, "key", None):
            out.append(str(node.key))
    return out


def _register(at: AppTest, name: str, version: str, config: str = "", description: str = "") -> None:
    at.text_input(key="m_new_name").set_value(name)
    at.text_input(key="m_new_version").set_value(version)
    at.text_input(key="m_new_description").set_value(description)
    at.text_area(key="m_new_config").set_value(config)
    next(b for b in at.button if b.proto.is_form_submitter and b.label == "Register model").click().run()
    assert not at.exception, at.exception


def test_a_json_error_keeps_every_field_and_shows_under_the_json_field(store: str) -> None:
    at = _open()
    _register(at, "ranker", "3", config='{"alpha": 0.3,}', description="gradient boosted")
    assert _models(store) == []
    assert at.text_input(key="m_new_name").value == "ranker"
    assert at.text_input(key="m_new_version").value == "3"
    assert at.text_input(key="m_new_description").value == "gradient boosted"
    assert at.text_area(key="m_new_config").value == '{"alpha": 0.3,}'
    order = _order(at)
    errors = [i for i, x in enumerate(order) if x.startswith("error: Config")]
    assert len(errors) == 1 and "invalid JSON" in order[errors[0]]
    assert order[errors[0] - 1] == "m_new_config"  # right under the JSON field


def test_a_duplicate_version_is_refused_and_keeps_what_was_typed(store: str) -> None:
    with Session(make_engine(store)) as s:
        create_model(session=s, name="ranker", version="1")
    at = _open()
    _register(at, "ranker", "1", description="same again")
    assert any("version '1' is already registered" in text(e.value) for e in at.error)
    assert at.text_input(key="m_new_description").value == "same again"
    assert _models(store) == [("ranker", "1")]


def test_a_second_version_of_a_model_is_a_new_row(store: str) -> None:
    with Session(make_engine(store)) as s:
        create_model(session=s, name="ranker", version="1")
    at = _open()
    _register(at, "ranker", "2", config='{"depth": 8}')
    assert _models(store) == [("ranker", "1"), ("ranker", "2")]


def test_the_edit_form_keeps_the_fields_on_a_json_error(store: str) -> None:
    with Session(make_engine(store)) as s:
        model = create_model(session=s, name="ranker", version="1", config={"a": 1})
    at = _open()
    at.text_input(key=f"m_name_{model.id}").set_value("ranker-renamed")
    at.text_area(key=f"m_config_{model.id}").set_value("[1,")
    next(b for b in at.button if b.proto.is_form_submitter and b.label == "Save changes").click().run()
    assert not at.exception, at.exception
    assert at.text_input(key=f"m_name_{model.id}").value == "ranker-renamed"
    assert at.text_area(key=f"m_config_{model.id}").value == "[1,"
    order = _order(at)
    index = order.index(f"m_config_{model.id}")
    assert order[index + 1].startswith("error: Config")
    assert _models(store) == [("ranker", "1")]  # nothing saved


def test_the_model_dropdown_starts_on_no_model(store: str) -> None:
    with Session(make_engine(store)) as s:
        create_model(session=s, name="ranker", version="4")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/create.py").run()
    box = at.selectbox(key="v_model_0")
    assert box.options == ["— no model —", "ranker (v4)"]
    assert box.index == 0 and box.proto.placeholder in ("", "— no model —")  # selected, not an empty placeholder
    assert "Choose an option" not in box.proto.placeholder
