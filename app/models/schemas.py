"""The model registry over the API."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.models.models import ModelRole


class ModelCreate(BaseModel):
    """Register a policy: a transformers model (folder, GGUF file or hub id) or an OpenAI-compatible server."""

    name: str = Field(min_length=1, max_length=200)
    backend: Literal["transformers", "openai"] = "transformers"
    source: str = Field("", max_length=2000, description="transformers: folder, .gguf file or hub id")
    base_url: str | None = Field(None, max_length=2000, description="openai: e.g. http://vllm:8000/v1")
    model: str | None = Field(None, max_length=500, description="openai: the served model's name")
    api_key: str | None = Field(None, max_length=2000, description="openai: sent as a Bearer token; never shown again")
    parent_id: int | None = None

    @model_validator(mode="after")
    def _complete(self) -> "ModelCreate":
        if self.backend == "transformers" and not self.source.strip():
            raise ValueError("a transformers policy needs `source`: a model folder, a .gguf file or a hub id")
        if self.backend == "openai" and not (self.base_url and self.model):
            raise ValueError("an openai policy needs `base_url` and `model`")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return self


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: ModelRole
    name: str
    backend: str
    source: str
    path: str | None
    parent_id: int | None
    created_by_job_id: int | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    created_at: datetime


class ModelList(BaseModel):
    items: list[ModelRead]
    next_cursor: int | None = None


class PromoteRequest(BaseModel):
    project_id: int
    sample: bool = Field(True, description="Queue sampling from the new policy for the project's prompts")
