"""Tasks over the API."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.labeling.models import TaskState
from app.prompts.models import FinishReason


class CompletionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    model_version_id: int
    text: str
    token_count: int
    finish_reason: FinishReason
    sampling_params: dict
    seed: int | None


class TaskRead(BaseModel):
    id: int
    prompt_id: int
    state: TaskState
    labels_needed: int
    labels_done: int
    created_at: datetime
    completions: list[CompletionRead]


class TaskList(BaseModel):
    items: list[TaskRead]
    next_cursor: int | None
