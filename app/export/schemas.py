"""Export options and snapshots over the API."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.projects.schemas import FLAG_KEY_RE


class ExportFormat(StrEnum):
    pairs = "pairs"
    rankings = "rankings"
    ratings = "ratings"
    sft = "sft"


class ExportFile(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"


class PairStyle(StrEnum):
    standard = "standard"
    conversational = "conversational"


class PairMode(StrEnum):
    labeler = "labeler"
    consensus = "consensus"


class TiePolicy(StrEnum):
    drop = "drop"
    keep = "keep"


class SplitBy(StrEnum):
    prompt = "prompt"
    user = "user"


class SplitName(StrEnum):
    train = "train"
    validation = "validation"
    test = "test"


class ExportOptions(BaseModel):
    """Everything an export can be asked for; a snapshot stores these as its filters."""

    model_config = ConfigDict(extra="forbid")

    format: ExportFormat = Field(ExportFormat.pairs, description="pairs, rankings, ratings or sft")
    file: ExportFile = Field(ExportFile.jsonl, description="jsonl (streamed) or parquet")
    style: PairStyle = Field(PairStyle.standard, description=(
        "pairs: `standard` gives prompt/chosen/rejected as text, `conversational` as chat messages "
        "(TRL's conversational preference format)"))
    mode: PairMode = Field(PairMode.labeler, description=(
        "pairs: `labeler` gives each labeler's pairs; `consensus` one set of pairs per task from the "
        "consensus ranking of its judgments"))
    ties: TiePolicy = Field(TiePolicy.drop, description=(
        "pairs: `drop` leaves tied pairs out; `keep` emits them with `tie: true` (never as a preference)"))
    min_agreement: float | None = Field(None, ge=0.0, le=1.0, description=(
        "Only tasks whose labelers agree on at least this share of pairs (pair agreement, 0..1)"))
    exclude_flags: list[str] = Field(default_factory=list, max_length=50, description=(
        "Leave out completions that any (not excluded) judgment flagged with one of these flag keys"))
    include_excluded: bool = Field(False, description="Also export judgments a reviewer excluded")
    since: datetime | None = Field(None, description="Judgments created at or after this time")
    until: datetime | None = Field(None, description="Judgments created before this time")
    model_version_id: int | None = Field(None, ge=1, description=(
        "Only completions from this model version (pairs: both sides; rankings: tasks sampled from it)"))
    split_by: SplitBy = Field(SplitBy.prompt, description=(
        "Split by prompt, or by the prompt's source user (prompts without one count as their own user)"))
    splits: tuple[float, float, float] = Field((1.0, 0.0, 0.0), description=(
        "train, validation and test fractions, summing to 1, e.g. `0.8,0.1,0.1`"))
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the split: the same seed gives the same split")
    split: SplitName | None = Field(None, description="Export only this split")
    include_best: bool = Field(False, description=(
        "sft: also the consensus-best completion of each task (unless most labelers found none acceptable)"))

    @field_validator("exclude_flags", mode="before")
    @classmethod
    def _comma_separated_flags(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
        return value

    @field_validator("exclude_flags")
    @classmethod
    def _flag_keys(cls, value: list[str]) -> list[str]:
        bad = [key for key in value if not FLAG_KEY_RE.match(key)]
        if bad:
            raise ValueError(f"not flag keys: {', '.join(map(repr, bad))}")
        return sorted(set(value))

    @field_validator("splits", mode="before")
    @classmethod
    def _comma_separated_splits(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")]
        return value

    @field_validator("splits")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("splits must be three fractions (train, validation, test) of at least 0 summing to 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ExportOptions":
        if self.format != ExportFormat.pairs:
            for name, default in (("style", PairStyle.standard), ("mode", PairMode.labeler), ("ties", TiePolicy.drop)):
                if getattr(self, name) != default:
                    raise ValueError(f"{name}={getattr(self, name)} applies to format=pairs only")
        if self.include_best and self.format != ExportFormat.sft:
            raise ValueError("include_best applies to format=sft only")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} needs a time zone, e.g. 2026-11-22T00:00:00Z")
        if self.split is not None and self.splits[list(SplitName).index(self.split)] == 0:
            raise ValueError(f"split={self.split} is empty with splits={','.join(map(str, self.splits))}")
        return self


class SnapshotRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    format: str
    file: str
    filters: dict[str, Any]
    counts: dict[str, Any]
    content_hash: str = Field(description="SHA-256 of the snapshot's bytes, as downloaded")
    size_bytes: int
    created_at: datetime
    created_by_id: int | None


class SnapshotList(BaseModel):
    items: list[SnapshotRead]
    next_cursor: int | None
