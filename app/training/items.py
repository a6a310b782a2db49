"""What the trainers read: one judgment's ranked completions of one prompt (no torch here)."""

import hashlib
import json
import random
from dataclasses import dataclass
from itertools import combinations

Prompt = str | list[dict[str, str]]


@dataclass(frozen=True)
class RankedItem:
    """One judgment: K completions of a prompt with their ranks (1 = best, equal ranks = a tie)."""

    prompt: Prompt
    completions: list[str]
    ranks: list[int]
    prompt_id: int | None = None
    judgment_id: int | None = None

    def __post_init__(self) -> None:
        if len(self.completions) < 2:
            raise ValueError(f"a ranked item needs at least 2 completions, got {len(self.completions)}")
        if len(self.ranks) != len(self.completions):
            raise ValueError(f"{len(self.ranks)} ranks for {len(self.completions)} completions")
        if any(r < 1 for r in self.ranks):
            raise ValueError(f"ranks start at 1, got {self.ranks}")

    def pairs(self) -> list[tuple[int, int]]:
        """(winner, loser) indices of the non-tied pairs, in a fixed order."""
        out = []
        for i, j in combinations(range(len(self.ranks)), 2):
            if self.ranks[i] < self.ranks[j]:
                out.append((i, j))
            elif self.ranks[j] < self.ranks[i]:
                out.append((j, i))
        return out

    def prompt_key(self) -> str:
        """Identifies the prompt: its id when known, else a hash of its content."""
        if self.prompt_id is not None:
            return f"id:{self.prompt_id}"
        return "sha:" + hashlib.sha256(json.dumps(self.prompt, sort_keys=True).encode()).hexdigest()


def split_by_prompt(items: list[RankedItem], eval_fraction: float,
                    seed: int) -> tuple[list[RankedItem], list[RankedItem]]:
    """Held-out split by prompt: all judgments of a prompt land on the same side.

    At least one prompt is held out when eval_fraction > 0 and there are two prompts or more.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    keys = sorted({item.prompt_key() for item in items})
    random.Random(seed).shuffle(keys)
    n_eval = round(len(keys) * eval_fraction)
    if eval_fraction > 0 and n_eval == 0 and len(keys) >= 2:
        n_eval = 1
    held_out = set(keys[:n_eval])
    train = [item for item in items if item.prompt_key() not in held_out]
    eval_ = [item for item in items if item.prompt_key() in held_out]
    return train, eval_


class TrainingError(Exception):
    """A training run cannot go on with what it was given: the message says what to fix."""
