"""Jobs over the API."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.models import JobKind, JobState


class JobCreate(BaseModel):
    kind: JobKind
    project_id: int
    params: dict[str, Any] = Field(default_factory=dict, description=(
        "sample: {\"prompt_ids\": [...]} to sample those prompts again, or {\"count\": N} for N more tasks "
        "beyond the ready target. train_reward / train_dpo: optional snapshot_id (a rankings snapshot of the "
        "project; default: a new one with the default filters), base_model_id (default: the project's current "
        "policy), name, and the trainer's parameters (RewardParams / DPOParams). score: reward_model_id and "
        "optional rescore"))


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: JobKind
    project_id: int | None
    state: JobState
    attempt: int
    max_attempts: int
    progress: float
    message: str
    error: str | None
    payload: dict[str, Any]
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    eta_at: datetime | None = Field(None, description="When a running training job expects to finish")
    finished_at: datetime | None


class JobList(BaseModel):
    items: list[JobRead]
    next_cursor: int | None = None
