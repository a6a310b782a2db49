"""Review figures and actions over the API."""

from datetime import datetime

from pydantic import BaseModel, Field

from app.labeling.models import TaskState


class TaskAgreementRead(BaseModel):
    n: int = Field(description="Included judgments the figures use.")
    kendall_w: float | None
    mean_tau_b: float | None
    pair_agreement: float | None


class ConsensusRead(BaseModel):
    ranks: dict[str, int] = Field(description="Completion id -> consensus rank, 1 = best; equal scores share a rank.")
    scores: dict[str, float] = Field(description="Bradley-Terry log-strengths, centred.")
    strength: float = Field(description="Mean P(win) of each consensus place over the next: 0.5 undecided, 1 decisive.")


class TaskFigures(BaseModel):
    task_id: int
    prompt_id: int
    state: TaskState
    labels_needed: int
    labels_done: int
    excluded: int = Field(description="Judgments of this task left out of every figure.")
    gold: bool
    agreement: TaskAgreementRead
    likert_spread: float | None = Field(description="Mean over completions of the Likert ratings' standard deviation.")
    consensus: ConsensusRead


class LabelerFigures(BaseModel):
    user_id: int
    username: str
    judgments: int = Field(description="Included judgments.")
    excluded_judgments: int
    labeler_excluded: bool
    agreement: float | None = Field(description="Mean tau-b with the consensus of the task's other labelers.")
    compared: int = Field(description="Judgments that had other labelers to compare with.")
    gold_accuracy: float | None = Field(description="Share of completion pairs put on the gold side.")
    gold_judgments: int
    median_seconds: float | None
    first_shown_top: float | None = Field(description="Share of judgments ranking the first-shown completion best.")
    first_shown_chance: float | None = Field(description="What chance gives for first_shown_top: mean 1/K.")
    flag_rate: float | None = Field(description="Share of rated completions given at least one flag.")
    reports: int = Field(description="Prompts this labeler reported.")
    outlier: bool
    z_score: float | None = Field(description="Robust z-score of agreement among labelers with enough judgments.")


class ProgressRead(BaseModel):
    prompts: int
    tasks: int
    tasks_ready: int
    tasks_in_progress: int
    tasks_done: int
    tasks_retired: int
    gold_tasks: int
    judgments: int
    excluded_judgments: int
    pairs: int


class AlphaRead(BaseModel):
    ranks: float | None = Field(description="Krippendorff's alpha, ordinal, over (task, completion) ranks.")
    likert: float | None = Field(description="Krippendorff's alpha, interval, over Likert ratings.")
    flags: dict[str, float | None] = Field(description="Krippendorff's alpha, nominal, per flag (given or not).")


class PeriodFigures(BaseModel):
    period: str = Field(description="Day (YYYY-MM-DD) or ISO week start the tasks were completed in.")
    tasks: int
    alpha_ranks: float | None
    alpha_likert: float | None
    mean_tau_b: float | None


class ThroughputRead(BaseModel):
    day: str
    judgments: int


class VersionRead(BaseModel):
    version_id: int
    name: str
    score: float
    low: float
    high: float
    rating: float = Field(description="The score on the Elo scale: 1000 + 400 / ln 10 x score.")
    rating_low: float
    rating_high: float
    pairs: int
    win_rate: float


class AgreementRead(BaseModel):
    project_id: int
    progress: ProgressRead
    alpha: AlphaRead
    over_time: list[PeriodFigures]
    throughput: list[ThroughputRead]
    tasks: list[TaskFigures] = Field(description="Lowest agreement first (tasks without figures last), paged.")
    tasks_total: int
    labelers: list[LabelerFigures]
    leaderboard: list[VersionRead]


class ExcludeRequest(BaseModel):
    reason: str = Field("", max_length=2000)


class ReopenRequest(BaseModel):
    extra_labels: int = Field(1, ge=1, le=20, description="How many more judgments the task needs.")


class GoldRequest(BaseModel):
    ranks: dict[str, int] = Field(max_length=9, description="Completion id -> rank, 1 = best; ties share a rank.")


class RatingRead(BaseModel):
    rank: int
    likert: int | None
    flags: list[str]
    note: str


class JudgmentReview(BaseModel):
    id: int
    task_id: int
    user_id: int
    username: str
    created_at: datetime
    revision: int
    duration_ms: int | None
    display_order: list[int]
    ratings: dict[str, RatingRead]
    rationale: str
    none_acceptable: bool
    prompt_flags: list[str]
    demonstration: str | None
    excluded: bool
    excluded_reason: str | None
    labeler_excluded: bool


class CompletionReview(BaseModel):
    id: int
    position: int
    model_version_id: int
    text: str


class TaskReview(BaseModel):
    id: int
    project_id: int
    state: TaskState
    labels_needed: int
    labels_done: int
    gold_ranks: dict[str, int] | None
    prompt: dict
    completions: list[CompletionReview]
    judgments: list[JudgmentReview]
    agreement: TaskAgreementRead
    consensus: ConsensusRead


class JudgmentExclusionRead(BaseModel):
    id: int
    task_id: int
    user_id: int
    excluded: bool
    excluded_reason: str | None


class TaskStateRead(BaseModel):
    id: int
    project_id: int
    state: TaskState
    labels_needed: int
    labels_done: int
    gold_ranks: dict[str, int] | None


class LabelerExclusionRead(BaseModel):
    project_id: int
    user_id: int
    excluded: bool
    changed: int = Field(description="Judgments whose exclusion this request changed.")


class FlaggedCompletion(BaseModel):
    completion_id: int
    task_id: int
    text: str
    flags: dict[str, int] = Field(description="Harmful flag -> labelers who gave it.")


class ReportedPrompt(BaseModel):
    task_id: int
    prompt_id: int
    text: str
    reports: int
    rationales: list[str]


class ReviewQueue(BaseModel):
    threshold: float
    low_agreement: list[TaskFigures]
    flagged: list[FlaggedCompletion]
    reported: list[ReportedPrompt]
