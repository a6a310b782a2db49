"""The model registry: policies, reward models and DPO results."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.users.models import str_enum


class ModelRole(StrEnum):
    policy = "policy"
    reward = "reward"
    dpo = "dpo"


class ModelVersion(Base):
    __tablename__ = "model_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[ModelRole] = mapped_column(str_enum(ModelRole))
    name: Mapped[str] = mapped_column(String(200))
    # Where the weights come from: "transformers" (a folder, hub id or GGUF file) or "openai"
    # (an OpenAI-compatible server).
    backend: Mapped[str] = mapped_column(String(32), default="transformers")
    source: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id", ondelete="SET NULL"))
    created_by_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("job.id", ondelete="SET NULL"), unique=True
    )
    # What a trained model was trained on (None for registered policies).
    dataset_snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_snapshot.id", ondelete="SET NULL"), index=True
    )
    config: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CompletionScore(Base):
    """A reward model's score of one completion (from a scoring job or best-of-N sampling)."""

    __tablename__ = "completion_score"
    __table_args__ = (UniqueConstraint("completion_id", "model_version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    completion_id: Mapped[int] = mapped_column(ForeignKey("completion.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id", ondelete="CASCADE"), index=True)
    score: Mapped[float] = mapped_column(Float)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
