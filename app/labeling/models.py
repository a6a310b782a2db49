"""Tasks, leases, judgments and the preference pairs they imply."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.users.models import str_enum


class TaskState(StrEnum):
    open = "open"
    complete = "complete"
    retired = "retired"


class AssignmentState(StrEnum):
    leased = "leased"
    submitted = "submitted"
    skipped = "skipped"
    expired = "expired"


class Task(Base):
    """One prompt with K completions, waiting for `labels_needed` judgments."""

    __tablename__ = "task"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt.id", ondelete="CASCADE"), index=True)
    state: Mapped[TaskState] = mapped_column(str_enum(TaskState), default=TaskState.open)
    labels_needed: Mapped[int]
    labels_done: Mapped[int] = mapped_column(default=0)
    # A gold task's known ranking (completion id -> rank, as judgments give it); None: not gold.
    # none_as_null: clearing it must store SQL NULL, which the gold queries test for.
    gold_ranks: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The queue's order (partly labeled tasks first, then oldest): the next task is the first row
# of this index that is not locked or seen, whatever the project's size.
Index("ix_task_queue", Task.project_id, Task.state, Task.labels_done.desc(), Task.id)


class TaskCompletion(Base):
    """A completion's place in a task (its canonical position, before per-labeler shuffling)."""

    __tablename__ = "task_completion"
    __table_args__ = (UniqueConstraint("task_id", "position"),)

    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"), primary_key=True)
    completion_id: Mapped[int] = mapped_column(
        ForeignKey("completion.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int]


class Assignment(Base):
    """A task leased to one labeler, with the order its completions were shown in."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("task_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    state: Mapped[AssignmentState] = mapped_column(
        str_enum(AssignmentState), default=AssignmentState.leased
    )
    display_order: Mapped[list[Any]]
    leased_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_expires_at: Mapped[datetime]
    skip_reason: Mapped[str | None] = mapped_column(Text)


class Judgment(Base):
    """One labeler's submission for a task: its ranking, ratings, flags and rationale."""

    __tablename__ = "judgment"
    __table_args__ = (
        UniqueConstraint("task_id", "user_id"),
        UniqueConstraint("user_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignment.id", ondelete="CASCADE"), unique=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(100))
    # Hash of the submitted body: the same key with another body is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    duration_ms: Mapped[int | None]
    rationale: Mapped[str] = mapped_column(Text, default="")
    none_acceptable: Mapped[bool] = mapped_column(default=False)
    prompt_flags: Mapped[list[Any]]
    demonstration: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(default=1)
    excluded: Mapped[bool] = mapped_column(default=False)
    excluded_reason: Mapped[str | None] = mapped_column(Text)
    # Excluded because its labeler is (review.LabelerExclusion): including the labeler again
    # brings these back, judgments excluded one by one stay out.
    excluded_with_labeler: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CompletionRating(Base):
    """A judgment's verdict on one completion: rank (ties share one), Likert, flags, note."""

    __tablename__ = "completion_rating"
    __table_args__ = (
        UniqueConstraint("judgment_id", "completion_id"),
        CheckConstraint("rank >= 1", name="rank_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    judgment_id: Mapped[int] = mapped_column(ForeignKey("judgment.id", ondelete="CASCADE"))
    completion_id: Mapped[int] = mapped_column(ForeignKey("completion.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int]
    likert: Mapped[int | None]
    flags: Mapped[list[Any]]
    note: Mapped[str] = mapped_column(Text, default="")


class Comparison(Base):
    """One of the K-choose-2 pairs a judgment implies; a tie keeps both sides with margin 0."""

    __tablename__ = "comparison"
    __table_args__ = (
        UniqueConstraint("judgment_id", "chosen_id", "rejected_id"),
        CheckConstraint("chosen_id <> rejected_id", name="distinct_sides"),
        CheckConstraint("margin >= 0", name="margin_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    judgment_id: Mapped[int] = mapped_column(ForeignKey("judgment.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"), index=True)
    chosen_id: Mapped[int] = mapped_column(ForeignKey("completion.id", ondelete="CASCADE"))
    rejected_id: Mapped[int] = mapped_column(ForeignKey("completion.id", ondelete="CASCADE"))
    margin: Mapped[int]
    is_tie: Mapped[bool] = mapped_column(default=False)
