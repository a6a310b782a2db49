"""Tasks over the API."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

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
    scores: dict[int, float] = Field(default_factory=dict, description=(
        "Reward-model scores of this completion, by reward model id (from score jobs and best-of-N sampling)"))


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


class RatingIn(BaseModel):
    likert: int | None = None
    flags: list[str] = Field(default_factory=list, max_length=50)
    note: str = Field("", max_length=10_000)


class JudgmentCreate(BaseModel):
    """A ranking of the task's completions (1 = best, equal ranks = a tie) and the ratings."""

    ranks: dict[str, int] = Field(max_length=9)
    ratings: dict[str, RatingIn] = Field(default_factory=dict, max_length=9)
    rationale: str = Field("", max_length=20_000)
    none_acceptable: bool = False
    prompt_flags: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(default_factory=list, max_length=20)
    demonstration: str | None = Field(None, max_length=50_000)
    duration_ms: int | None = Field(None, ge=0, le=7 * 24 * 3600 * 1000)


class AssignmentRead(BaseModel):
    id: int
    task_id: int
    lease_expires_at: datetime
    prompt: dict
    completions: list[dict]


class PairRead(BaseModel):
    chosen_id: int
    rejected_id: int
    margin: int
    is_tie: bool


class JudgmentRead(BaseModel):
    id: int
    task_id: int
    assignment_id: int
    created_at: datetime
    revision: int
    comparisons: list[PairRead]


class JudgmentDetail(JudgmentRead):
    rationale: str
    none_acceptable: bool
    prompt_flags: list[str]
    demonstration: str | None
    display_order: list[int]
    ranks: dict[str, int]
    ratings: dict[str, RatingIn]
    prompt: dict
    completions: list[dict]


class JudgmentList(BaseModel):
    items: list[JudgmentRead]
    next_cursor: int | None = None


class JudgmentAdminRead(BaseModel):
    """A judgment as an admin sees it: who, when, what was answered, and whether review excluded it."""

    id: int
    task_id: int
    prompt_id: int
    user_id: int
    assignment_id: int
    revision: int
    created_at: datetime
    updated_at: datetime
    duration_ms: int | None
    excluded: bool
    excluded_reason: str | None
    none_acceptable: bool
    rationale: str
    prompt_flags: list[str]
    demonstration: str | None
    ranks: dict[str, int]
    ratings: dict[str, RatingIn]


class JudgmentAdminList(BaseModel):
    items: list[JudgmentAdminRead]
    next_cursor: int | None


class ComparisonRead(BaseModel):
    id: int
    judgment_id: int
    task_id: int
    user_id: int
    chosen_id: int
    rejected_id: int
    margin: int
    is_tie: bool
    judgment_excluded: bool


class ComparisonList(BaseModel):
    items: list[ComparisonRead]
    next_cursor: int | None


class SkipRequest(BaseModel):
    reason: str = Field("", max_length=2000)
