"""Prompts and the completions a policy wrote for them."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.users.models import str_enum


class PromptKind(StrEnum):
    text = "text"
    chat = "chat"


class FinishReason(StrEnum):
    stop = "stop"
    length = "length"


class Prompt(Base):
    __tablename__ = "prompt"
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash"),
        UniqueConstraint("project_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[PromptKind] = mapped_column(str_enum(PromptKind))
    # For chat prompts, the turns as "role: content" lines, for display, search and the
    # near-duplicate rule; the turns themselves are in `messages`.
    text: Mapped[str] = mapped_column(Text)
    messages: Mapped[list[Any] | None]
    content_hash: Mapped[str] = mapped_column(String(64))
    # Who wrote the prompt (InstructGPT splits train/validation/test by this user).
    source_user: Mapped[str | None] = mapped_column(String(200), index=True)
    source: Mapped[str] = mapped_column(String(200), default="")
    meta: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))


class Completion(Base):
    __tablename__ = "completion"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    token_count: Mapped[int]
    finish_reason: Mapped[FinishReason] = mapped_column(str_enum(FinishReason))
    sampling_params: Mapped[dict[str, Any]]
    seed: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
