"""What every sampling backend takes and returns."""

from dataclasses import dataclass, field
from typing import Protocol


class PolicyError(Exception):
    """A policy could not be loaded or asked: the message says what to fix."""


class PolicyUnavailable(PolicyError):
    """The policy's server did not answer in time or kept failing: worth another attempt later."""


@dataclass(frozen=True)
class PromptSpec:
    """A prompt as the policy sees it: plain text, or chat turns (role/content dicts)."""

    text: str
    messages: list[dict[str, str]] | None = None

    def as_messages(self) -> list[dict[str, str]]:
        return self.messages or [{"role": "user", "content": self.text}]


@dataclass(frozen=True)
class SamplingParams:
    n: int
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 256
    seed: int | None = None


@dataclass
class Sample:
    text: str
    token_count: int
    finish_reason: str  # "stop" (the model ended) or "length" (max_new_tokens reached)
    extra: dict = field(default_factory=dict)


class Policy(Protocol):
    def sample(self, prompts: list[PromptSpec], params: SamplingParams) -> list[list[Sample]]:
        """params.n samples for each prompt, in prompt order."""
        ...
