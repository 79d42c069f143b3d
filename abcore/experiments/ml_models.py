"""The model registry (``ab_models``): the models the creation form offers per variant."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from abcore.experiments.errors import ExperimentError
from abcore.experiments.validation import name_problems
from abcore.store.db import commit_unique
from abcore.store.tables import Model, utcnow

EDITABLE_FIELDS = ("name", "version", "description", "config", "is_active")


class ModelError(ExperimentError):
    """A registry request abcore refuses (duplicate name, unknown model, bad field)."""


def _check(name: str | None, config: Any) -> None:
    """Raise :class:`ModelError` unless ``name`` (when given) is a valid name and ``config`` (when given) an object."""
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise ModelError("A model needs a name.")
        problems = name_problems("model name", name.strip())
        if problems:
            raise ModelError(" ".join(problems), problems)
    if config is not None and not isinstance(config, dict):
        raise ModelError("A model's config must be a JSON object.")


def create_model(
    *,
    session: Session,
    name: str,
    version: str = "1",
    description: str = "",
    config: dict[str, Any] | None = None,
) -> Model:
    """Register a model, or a new version of a registered one: ``(name, version)`` is unique.

    A name already registered in the same version is refused; a new version gets its own row
    (variants keep pointing at the version they were created with).
    """
    _check(name, config)
    name, version = name.strip(), str(version).strip() or "1"
    if find_model(session=session, name=name, version=version) is not None:
        raise ModelError(f"Model {name!r} version {version!r} is already registered; choose another version.")
    model = Model(name=name, version=version, description=description, config=config or {})
    session.add(model)
    return commit_unique(session, model, ModelError(
        f"Model {name!r} version {version!r} is already registered; choose another version."))


def find_model(*, session: Session, name: str, version: str | None = None) -> Model | None:
    """The model called ``name`` (surrounding spaces ignored) in ``version``; any version's newest row
    when ``version`` is None. ``None`` when there is no such model."""
    query = select(Model).where(Model.name == name.strip())
    if version is not None:
        query = query.where(Model.version == str(version).strip())
    return session.exec(query.order_by(col(Model.id).desc())).first()


def model_versions(*, session: Session, name: str) -> list[str]:
    """The registered versions of the model called ``name``, oldest first."""
    query = select(Model.version).where(Model.name == name.strip()).order_by(col(Model.id))
    return [str(v) for v in session.exec(query).all()]


def get_model(*, session: Session, model_id: int) -> Model:
    model = session.get(Model, model_id)
    if model is None:
        raise ModelError(f"No model with id {model_id}.")
    return model


def update_model(*, session: Session, model_id: int, **fields: Any) -> Model:
    """Change a model's name, version, description, config or active flag."""
    unknown = sorted(set(fields) - set(EDITABLE_FIELDS))
    if unknown:
        raise ModelError(f"Unknown model field(s): {', '.join(unknown)}.")
    _check(fields.get("name"), fields.get("config"))
    model = get_model(session=session, model_id=model_id)
    name = str(fields.get("name", model.name)).strip()
    version = str(fields.get("version", model.version)).strip() or "1"
    other = find_model(session=session, name=name, version=version)
    if other is not None and other.id != model.id:
        raise ModelError(f"Model {name!r} version {version!r} is already registered.")
    for key, value in fields.items():
        setattr(model, key, value.strip() if key in ("name", "version") and isinstance(value, str) else value)
    model.updated_at = utcnow()
    session.add(model)
    return commit_unique(session, model, ModelError(f"Model {name!r} version {version!r} is already registered."))


def retire_model(*, session: Session, model_id: int) -> Model:
    """Stop offering a model; variants that used it keep their reference."""
    return update_model(session=session, model_id=model_id, is_active=False)


def list_models(*, session: Session, active_only: bool = True) -> list[Model]:
    """Registered models by name; only the active ones unless ``active_only`` is False."""
    query = select(Model).order_by(col(Model.name))
    if active_only:
        query = query.where(col(Model.is_active).is_(True))
    return list(session.exec(query).all())
