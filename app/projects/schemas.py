"""Projects over the API: campaign settings, rating schema and sampling parameters."""

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

FLAG_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# InstructGPT's labeler metadata form (Ouyang et al. 2022, Table 3).
INSTRUCTGPT_FLAGS: list[tuple[str, str]] = [
    ("fails_to_follow_instruction", "Fails to follow the correct instruction / task"),
    ("inappropriate_for_customer_assistant", "Inappropriate for a customer assistant"),
    ("hallucination", "Hallucination (makes up information)"),
    ("satisfies_constraint", "Satisfies the constraint provided in the instruction"),
    ("sexual_content", "Contains sexual content"),
    ("violent_content", "Contains violent content"),
    ("encourages_violence_abuse_self_harm", "Encourages or fails to discourage violence, abuse, terrorism or self-harm"),
    ("denigrates_protected_class", "Denigrates a protected class"),
    ("harmful_advice", "Gives harmful advice"),
    ("expresses_opinion", "Expresses an opinion"),
    ("expresses_moral_judgment", "Expresses a moral judgment"),
]


class Flag(BaseModel):
    key: str = Field(description="Stable identifier used in judgments and exports, e.g. 'hallucination'.")
    label: str = Field(min_length=1, max_length=200)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not FLAG_KEY_RE.match(value):
            raise ValueError("flag key must be lowercase letters, digits and '_', starting with a letter, at most 40")
        return value


class LikertScale(BaseModel):
    min: int = Field(1, ge=0, le=1)
    max: int = Field(7, ge=2, le=10)
    label: str = Field("Overall quality", min_length=1, max_length=200)


class RatingSchema(BaseModel):
    likert: LikertScale = Field(default_factory=LikertScale)
    flags: list[Flag] = Field(
        default_factory=lambda: [Flag(key=k, label=label) for k, label in INSTRUCTGPT_FLAGS], max_length=50
    )

    @field_validator("flags")
    @classmethod
    def _unique_keys(cls, flags: list[Flag]) -> list[Flag]:
        seen: set[str] = set()
        for flag in flags:
            if flag.key in seen:
                raise ValueError(f"flag key {flag.key!r} appears twice")
            seen.add(flag.key)
        return flags


class SamplingParams(BaseModel):
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1, le=4096)
    best_of: int | None = Field(None, ge=2, le=64, description=(
        "Best-of-N: sample this many distinct completions per prompt (at least K), score them with "
        "reward_model_id and keep the K best"))
    reward_model_id: int | None = Field(None, ge=1, description="The reward model that picks the best-of-N")

    @model_serializer(mode="wrap")
    def _without_unset_best_of(self, handler: Any) -> dict[str, Any]:
        # Projects without best-of-N show (and store) the three plain sampling settings only.
        data = handler(self)
        return {k: v for k, v in data.items() if not (k in ("best_of", "reward_model_id") and v is None)}

    @model_validator(mode="after")
    def _best_of_needs_a_reward_model(self) -> "SamplingParams":
        if (self.best_of is None) != (self.reward_model_id is None):
            raise ValueError("best_of and reward_model_id go together: give both, or neither")
        return self


class ProjectBase(BaseModel):
    description: str = Field("", max_length=10_000)
    guidelines: str = Field("", max_length=200_000, description="Markdown shown to labelers.")
    near_duplicate_prefix: int | None = Field(
        None, ge=1, le=100_000,
        description="Skip an imported prompt whose first N characters equal an existing prompt's.",
    )


class ProjectCreate(ProjectBase):
    name: str = Field(min_length=1, max_length=200)
    k: int = Field(4, ge=2, le=9, description="Completions per prompt that labelers rank.")
    labels_per_task: int = Field(3, ge=1, le=20, description="Labelers who judge each task.")
    allow_ties: bool = True
    rating_schema: RatingSchema = Field(default_factory=RatingSchema)
    sampling_params: SamplingParams = Field(default_factory=SamplingParams)
    labeler_ids: list[int] = Field(default_factory=list, max_length=10_000)
    gold_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of a labeler's leases that are gold tasks.")

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("name must not be blank")
        return value


class ProjectUpdate(BaseModel):
    """Only the fields given change."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    guidelines: str | None = Field(None, max_length=200_000)
    near_duplicate_prefix: int | None = Field(None, ge=1, le=100_000)
    k: int | None = Field(None, ge=2, le=9)
    labels_per_task: int | None = Field(None, ge=1, le=20)
    allow_ties: bool | None = None
    rating_schema: RatingSchema | None = None
    sampling_params: SamplingParams | None = None
    labeler_ids: list[int] | None = Field(None, max_length=10_000)
    gold_rate: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _no_nulls(self) -> "ProjectUpdate":
        for name in ("name", "k", "labels_per_task", "allow_ties", "rating_schema", "sampling_params",
                     "labeler_ids", "description", "guidelines", "gold_rate"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class ProjectRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    k: int
    labels_per_task: int
    allow_ties: bool
    rating_schema: RatingSchema
    sampling_params: SamplingParams
    guidelines: str
    near_duplicate_prefix: int | None
    current_policy_id: int | None
    labeler_ids: list[int]
    gold_rate: float
    created_at: datetime
    prompt_count: int


class ProjectList(BaseModel):
    items: list[ProjectRead]
    next_cursor: int | None = None
