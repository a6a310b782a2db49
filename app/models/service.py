"""The model registry: the bundled default policy, registered policies, promotion."""

from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app.db import get_by_id, utcnow
from app.errors import Invalid, NotFound
from app.models import bundled
from app.models.models import CompletionScore, ModelRole, ModelVersion
from app.models.schemas import ModelCreate, ModelRead
from app.projects.models import Project

SECRET_CONFIG_KEYS = ("api_key",)


def ensure_default_policy(*, session: Session, models_dir: Path) -> ModelVersion:
    """The registry row of the bundled SmolLM2 policy, created on first use."""
    path = str(bundled.default_policy_path(models_dir))
    existing = session.scalar(select(ModelVersion).where(ModelVersion.source == bundled.WHEEL_REQUIREMENT,
                                                         ModelVersion.path == path))
    if existing is not None:
        return existing
    model = ModelVersion(role=ModelRole.policy, name=bundled.NAME, backend="transformers",
                         source=bundled.WHEEL_REQUIREMENT, path=path, config={"default": True}, metrics={})
    session.add(model)
    session.flush()
    return model


def default_policy(*, session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.source == bundled.WHEEL_REQUIREMENT)
                          .order_by(ModelVersion.id.desc()).limit(1))


def register_model(*, session: Session, data: ModelCreate) -> ModelVersion:
    if data.parent_id is not None and get_by_id(session, ModelVersion, data.parent_id) is None:
        raise Invalid(f"parent model {data.parent_id} not found", code="unknown_parent")
    config: dict[str, Any] = {}
    if data.backend == "openai":
        config = {"base_url": data.base_url, "model": data.model}
        if data.api_key:
            config["api_key"] = data.api_key
    model = ModelVersion(role=ModelRole.policy, name=data.name, backend=data.backend,
                         source=data.source.strip() or f"{data.base_url}#{data.model}",
                         path=data.source.strip() or None, parent_id=data.parent_id, config=config, metrics={})
    session.add(model)
    session.flush()
    return model


def promote(*, model: ModelVersion, project: Project) -> None:
    """Make a policy the project's current one: new tasks are sampled from it."""
    if model.role not in (ModelRole.policy, ModelRole.dpo):
        raise Invalid(f"model {model.id} is a {model.role} model; only policies can be promoted", code="not_a_policy")
    project.current_policy_id = model.id


def get_model(*, session: Session, model_id: int) -> ModelVersion:
    model = get_by_id(session, ModelVersion, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found", code="model_not_found")
    return model


def list_models(*, session: Session, role: ModelRole | None = None, after_id: int | None = None,
                limit: int | None = None) -> list[ModelVersion]:
    query = select(ModelVersion).order_by(ModelVersion.id).limit(limit)
    if role is not None:
        query = query.where(ModelVersion.role == role)
    if after_id is not None:
        query = query.where(ModelVersion.id > after_id)
    return list(session.scalars(query))


def to_read(model: ModelVersion) -> ModelRead:
    """The model as shown over the API: secrets in its config are masked."""
    read = ModelRead.model_validate(model)
    read.config = {k: ("***" if k in SECRET_CONFIG_KEYS else v) for k, v in model.config.items()}
    return read


def store_scores(*, session: Session, model_version_id: int, scores: dict[int, float], job_id: int | None) -> None:
    """Scores of completions by a reward model, replacing earlier ones of the same pair."""
    if not scores:
        return
    ids = list(scores)
    for start in range(0, len(ids), 1000):
        session.execute(delete(CompletionScore).where(CompletionScore.model_version_id == model_version_id,
                                                      CompletionScore.completion_id.in_(ids[start:start + 1000])))
    session.execute(insert(CompletionScore), [
        {"completion_id": cid, "model_version_id": model_version_id, "score": float(score), "job_id": job_id,
         "created_at": utcnow()} for cid, score in scores.items()])


def completion_scores(*, session: Session, completion_ids: list[int]) -> dict[int, dict[int, float]]:
    """completion id -> {reward model id: score} for these completions."""
    found: dict[int, dict[int, float]] = {}
    for start in range(0, len(completion_ids), 1000):
        for cid, model_id, score in session.execute(
                select(CompletionScore.completion_id, CompletionScore.model_version_id, CompletionScore.score)
                .where(CompletionScore.completion_id.in_(completion_ids[start:start + 1000]))):
            found.setdefault(cid, {})[model_id] = score
    return found
