"""Labeling campaigns and who may work on them."""

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow


class Project(Base):
    __tablename__ = "project"
    __table_args__ = (
        CheckConstraint("k BETWEEN 2 AND 9", name="k_range"),
        CheckConstraint("labels_per_task BETWEEN 1 AND 20", name="labels_per_task_range"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 1", name="gold_rate_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    k: Mapped[int]
    labels_per_task: Mapped[int]
    allow_ties: Mapped[bool] = mapped_column(default=True)
    rating_schema: Mapped[dict[str, Any]]
    guidelines: Mapped[str] = mapped_column(Text, default="")
    sampling_params: Mapped[dict[str, Any]]
    # Skip a prompt whose first N characters equal another's (InstructGPT's long-common-prefix
    # rule); None keeps only exact duplicates out.
    near_duplicate_prefix: Mapped[int | None]
    current_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL", use_alter=True)
    )
    # Share of a labeler's leases that are gold tasks while gold tasks they have not seen remain.
    gold_rate: Mapped[float] = mapped_column(default=0.0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    members: Mapped[list["ProjectMember"]] = relationship(
        back_populates="project", cascade="all, delete-orphan"
    )


class ProjectMember(Base):
    """A labeler allowed to work on a project (admins may work on every project)."""

    __tablename__ = "project_member"

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="members")
