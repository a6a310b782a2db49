"""Prompts over the API and the result of an import."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.prompts.models import PromptKind


@dataclass
class PromptIn:
    """One validated prompt from an import file, with where it came from."""

    line: int
    kind: PromptKind
    text: str
    messages: list[dict[str, str]] | None
    content_hash: str
    external_id: str | None = None
    source_user: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class ImportResult(BaseModel):
    total: int
    imported: int
    duplicates: int
    near_duplicates: int


class PromptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    external_id: str | None
    kind: PromptKind
    text: str
    messages: list[dict[str, str]] | None
    source_user: str | None
    source: str
    meta: dict[str, Any]
    created_at: datetime


class PromptList(BaseModel):
    items: list[PromptRead]
    next_cursor: int | None
