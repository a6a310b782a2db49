"""Queueing training and scoring jobs: their parameters checked, their dataset snapshot and models resolved.

Web-side and torch-free: the trainer parameters are validated with the torch-free models of
app/training/params.py, and a training job's snapshot is frozen here, in the request's
transaction, so every attempt of the job trains on exactly the same bytes.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from app.errors import Invalid, NotFound, describe_validation_errors
from app.export.models import DatasetSnapshot
from app.export.schemas import ExportFile, ExportFormat, ExportOptions
from app.export.service import create_snapshot, get_snapshot
from app.jobs import service as queue
from app.jobs.models import Job, JobKind
from app.models.models import ModelRole, ModelVersion
from app.models.service import get_model
from app.projects.models import Project

TRAINER_ROLES = {JobKind.train_reward: ModelRole.reward, JobKind.train_dpo: ModelRole.dpo}
MIN_JUDGMENTS = 2


class TrainJobOptions(BaseModel):
    """The job-level keys of a training job's params; every other key is the trainer's."""

    model_config = ConfigDict(extra="ignore")

    snapshot_id: int | None = Field(None, ge=1, description="A rankings snapshot of the project (default: a new one)")
    base_model_id: int | None = Field(None, ge=1, description="The model to start from (default: the current policy)")
    name: str | None = Field(None, min_length=1, max_length=200, description="The trained model's name")


class ScoreJobParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward_model_id: int = Field(ge=1, description="The reward model that scores")
    rescore: bool = Field(False, description="Score again completions this reward model already scored")


def _checked(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """Validated params, or a 422 naming each bad field as params.<field>."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("params", *e["loc"])} for e in exc.errors()]
        message, details = describe_validation_errors(errors)
        raise Invalid(message, code="invalid_params", details=details) from exc


def trainer_params_model(kind: JobKind) -> type[BaseModel]:
    from app.training.params import DPOParams, RewardParams

    return RewardParams if kind == JobKind.train_reward else DPOParams


def _base_model(session: Session, project: Project, base_model_id: int | None) -> ModelVersion:
    if base_model_id is None:
        if project.current_policy_id is None:
            raise Invalid(f"project {project.name!r} has no current policy; pass params.base_model_id",
                          code="no_policy")
        base_model_id = project.current_policy_id
    try:
        model = get_model(session=session, model_id=base_model_id)
    except NotFound as exc:  # a bad field of this request, not a missing resource
        raise Invalid(f"params.base_model_id: no model {base_model_id}", code="unknown_model") from exc
    if model.role not in (ModelRole.policy, ModelRole.dpo) or model.backend != "transformers":
        raise Invalid(f"params.base_model_id: model {model.id} is a {model.role} model served by {model.backend}; "
                      "training starts from a transformers policy (a folder or a .gguf file)", code="unusable_model")
    return model


def _snapshot(session: Session, project: Project, snapshot_id: int | None, created_by_id: int | None,
              settings: Any) -> DatasetSnapshot:
    if snapshot_id is None:
        snapshot = create_snapshot(session=session, project=project, created_by_id=created_by_id, settings=settings,
                                   options=ExportOptions(format=ExportFormat.rankings, file=ExportFile.jsonl))
    else:
        try:
            snapshot = get_snapshot(session=session, snapshot_id=snapshot_id)
        except NotFound as exc:
            raise Invalid(f"params.snapshot_id: no snapshot {snapshot_id}", code="unknown_snapshot") from exc
        if snapshot.project_id != project.id:
            raise Invalid(f"params.snapshot_id: snapshot {snapshot.id} belongs to project {snapshot.project_id}",
                          code="wrong_project")
        if (snapshot.format, snapshot.file) != (ExportFormat.rankings.value, ExportFile.jsonl.value):
            raise Invalid(f"params.snapshot_id: snapshot {snapshot.id} is {snapshot.format} as {snapshot.file}; "
                          "training reads format=rankings as jsonl (one ranking per judgment)", code="wrong_format")
    rows = snapshot.counts.get("rows", 0)
    if rows < MIN_JUDGMENTS:
        raise Invalid(f"snapshot of project {project.name!r} holds {rows} judgment(s); training needs at least "
                      f"{MIN_JUDGMENTS}", code="not_enough_data")
    return snapshot


def queue_training(*, session: Session, project: Project, kind: JobKind, params: dict[str, Any],
                   created_by_id: int | None, settings: Any) -> Job:
    """A train_reward or train_dpo job on a snapshot of the project (flushed, not committed)."""
    options = _checked(TrainJobOptions, params)
    base = _base_model(session, project, options.base_model_id)
    trainer_keys = {k: v for k, v in params.items() if k not in TrainJobOptions.model_fields}
    trainer = _checked(trainer_params_model(kind), trainer_keys)
    snapshot = _snapshot(session, project, options.snapshot_id, created_by_id, settings)
    payload = {"snapshot_id": snapshot.id, "base_model_id": base.id, "name": options.name,
               "params": trainer.model_dump(mode="json")}
    return queue.enqueue(session=session, kind=kind, payload=payload, project_id=project.id,
                         created_by_id=created_by_id)


def queue_scoring(*, session: Session, project: Project, params: dict[str, Any], created_by_id: int | None) -> Job:
    """A score job: the reward model scores the project's completions (flushed, not committed)."""
    checked = _checked(ScoreJobParams, params)
    try:
        model = get_model(session=session, model_id=checked.reward_model_id)
    except NotFound as exc:
        raise Invalid(f"params.reward_model_id: no model {checked.reward_model_id}", code="unknown_model") from exc
    if model.role != ModelRole.reward:
        raise Invalid(f"params.reward_model_id: model {model.id} is a {model.role} model, not a reward model",
                      code="not_a_reward_model")
    return queue.enqueue(session=session, kind=JobKind.score, project_id=project.id, created_by_id=created_by_id,
                         payload=checked.model_dump(),
                         dedupe_key=f"score:{project.id}:{model.id}:{int(checked.rescore)}")
