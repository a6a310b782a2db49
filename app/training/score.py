"""Scores completions with a saved reward model, read the same way as in training and centred."""

import threading
from pathlib import Path
from typing import Any

import torch

from app.training.common import CompletionRewards, EncodedItem, encode_completions, pad_batch, pick_device
from app.training.items import Prompt, TrainingError


# The loaded reward model stays in the worker between calls (a scoring job calls once per chunk,
# best-of-N sampling once per batch); one at a time keeps memory bounded.
_cache: dict[tuple[str, str, int], tuple[CompletionRewards, Any]] = {}
_cache_lock = threading.Lock()


def load_scorer(reward_path: str, device: str) -> tuple[CompletionRewards, Any]:
    """The reward model and its tokenizer, loaded once per worker (the previous one is dropped)."""
    config = Path(reward_path) / "config.json"
    if not config.exists():
        raise TrainingError(f"{reward_path} is not a saved reward model folder (it has no config.json)")
    key = (str(Path(reward_path).resolve()), device, config.stat().st_mtime_ns)
    with _cache_lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = _load_scorer(reward_path, device)
        return _cache[key]


def _load_scorer(reward_path: str, device: str) -> tuple[CompletionRewards, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(reward_path, dtype=dtype, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(reward_path)
    return CompletionRewards(model).to(device).eval(), tokenizer


def score_completions(*, reward_path: str, prompts: list[Prompt], completions: list[list[str]],
                      device: str | None = None, batch_size: int = 16) -> list[list[float]]:
    """One centred reward per completion, in order; each prompt is forwarded once for its completions.

    Up to batch_size completions (of one prompt or several) go through the model in one forward.
    """
    if len(prompts) != len(completions):
        raise TrainingError(f"{len(prompts)} prompts but {len(completions)} lists of completions")
    device = pick_device(device)
    module, tokenizer = load_scorer(reward_path, device)
    config = module.model.config
    offset = float(getattr(config, "reward_mean", 0.0))
    max_length = int(getattr(config, "reward_max_length", 512))
    pad_id = config.pad_token_id
    encoded = [encode_completions(tokenizer, prompt, texts[start:start + batch_size], max_length)
               for prompt, texts in zip(prompts, completions) for start in range(0, len(texts), batch_size)]
    scores: list[float] = []
    group: list[EncodedItem] = []
    with torch.inference_mode():
        for enc in encoded:
            if group and sum(len(e.completion_ids) for e in group) + len(enc.completion_ids) > batch_size:
                scores += _score(module, group, pad_id, device)
                group = []
            group.append(enc)
        if group:
            scores += _score(module, group, pad_id, device)
    out: list[list[float]] = []
    for texts in completions:
        out.append([s - offset for s in scores[:len(texts)]])
        scores = scores[len(texts):]
    return out


def _score(module: CompletionRewards, group: list[EncodedItem], pad_id: int, device: str) -> list[float]:
    return module(*pad_batch(group, pad_id, device).inputs).float().tolist()
