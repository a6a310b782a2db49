"""DPO on ranked judgments: each judgment's K completions go through the policy once, loss over its pairs."""

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.training.common import (CompletionLogps, EncodedItem, StepTimer, TokenBatch, call_stop, encode_items,
                                 first_epoch_groups, forward_groups, item_means, load_causal_lm, load_tokenizer,
                                 make_accelerator, pad_batch, pick_device, run_summary, save_model, train_loop)
from app.training.items import RankedItem, TrainingError
from app.training.params import DPOParams

_PAIR_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                 "logps/chosen", "logps/rejected")


def dpo_pair_terms(policy: torch.Tensor, reference: torch.Tensor, batch: TokenBatch,
                   beta: float) -> dict[str, torch.Tensor]:
    """Per-pair DPO loss (sigmoid) and TRL's per-pair figures, from per-completion summed log-probs."""
    chosen = beta * (policy[batch.winners] - reference[batch.winners])
    rejected = beta * (policy[batch.losers] - reference[batch.losers])
    losses = -F.logsigmoid(chosen - rejected)
    return {"losses": losses, "item_losses": item_means(losses, batch), "rewards/chosen": chosen,
            "rewards/rejected": rejected, "rewards/accuracies": (chosen > rejected).float(),
            "rewards/margins": chosen - rejected, "logps/chosen": policy[batch.winners],
            "logps/rejected": policy[batch.losers]}


def _ref_cache_path(ref_cache_dir: Path, cache_key: str | None, base_path: str, max_length: int,
                    encoded: list[EncodedItem]) -> Path:
    digest = hashlib.sha256()
    digest.update(json.dumps({"key": cache_key, "base": base_path, "max_length": max_length}).encode())
    for enc in encoded:
        digest.update(json.dumps([enc.prompt_ids, enc.completion_ids]).encode())
    return ref_cache_dir / f"ref-logps-{digest.hexdigest()[:32]}.safetensors"


def reference_logps(module: CompletionLogps, encoded: list[EncodedItem], groups: list[list[int]], *, pad_id: int,
                    accelerator: Any, should_stop: Callable[[], None] | None = None) -> list[torch.Tensor]:
    """Per-completion log-probs under the initial weights (eval mode, no grads), one tensor per item.

    groups are the forward batches to compute them in (each item in one at least).
    """
    was_training = module.training
    module.eval()
    out: list[torch.Tensor | None] = [None] * len(encoded)
    with torch.inference_mode(), accelerator.autocast():
        for group in groups:
            call_stop(should_stop)
            batch = pad_batch([encoded[i] for i in group], pad_id, accelerator.device)
            for i, logps in zip(group, module(*batch.inputs).float().split(batch.sizes)):
                out[i] = logps.clone()
    module.train(was_training)
    return out


def cached_reference_logps(module: CompletionLogps, encoded: list[EncodedItem], groups: list[list[int]], *,
                           pad_id: int, accelerator: Any, path: Path | None,
                           should_stop: Callable[[], None] | None = None) -> list[torch.Tensor]:
    """Reference log-probs from the cache file when it exists, else computed once and written there."""
    from safetensors.torch import load_file, save_file

    sizes = [len(enc.completion_ids) for enc in encoded]
    if path is not None and path.exists():
        flat = load_file(str(path))["logps"].to(accelerator.device)
        if flat.numel() == sum(sizes):
            return list(flat.split(sizes))
    refs = reference_logps(module, encoded, groups, pad_id=pad_id, accelerator=accelerator, should_stop=should_stop)
    if path is not None and accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({"logps": torch.cat(refs).cpu().contiguous()}, str(tmp))
        os.replace(tmp, path)
    return refs


def train_dpo(*, base_path: str, items: list[RankedItem], eval_items: list[RankedItem], out_dir: Path,
              params: DPOParams, on_step: Callable[[dict], None] | None = None,
              should_stop: Callable[[], None] | None = None, device: str | None = None,
              ref_cache_dir: Path | None = None, cache_key: str | None = None) -> dict:
    """Train a DPO policy from base_path on the items, save it to out_dir, return the final figures."""
    timer = StepTimer()
    device = pick_device(device)
    accelerator = make_accelerator(device)
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(base_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train, stats = encode_items(tokenizer, items, params.max_length)
    evals, eval_stats = encode_items(tokenizer, eval_items, params.max_length)
    if not train:
        raise TrainingError(f"none of the {len(items)} training judgments has a non-tied pair to learn from")
    module = CompletionLogps(load_causal_lm(base_path)).to(accelerator.device)

    # The reference is the initial weights: their log-probs once, before any update, so no second model.
    cache_path = None
    if ref_cache_dir is not None:
        cache_path = _ref_cache_path(Path(ref_cache_dir), cache_key, base_path, params.max_length, train + evals)
    # The training items in the first epoch's forward batches (so step 0 recomputes exactly these), then
    # the held-out ones in evaluate's.
    groups = first_epoch_groups(len(train), params, accelerator.num_processes)
    groups += [[len(train) + i for i in group] for group in forward_groups(list(range(len(evals))),
                                                                            params.batch_judgments)]
    refs = cached_reference_logps(module, train + evals, groups, pad_id=pad_id, accelerator=accelerator,
                                  path=cache_path, should_stop=should_stop)

    def terms(encoded: list[EncodedItem], offset: int) -> Callable[[Any, list[int]], dict[str, torch.Tensor]]:
        def group_terms(model: Any, group: list[int]) -> dict[str, torch.Tensor]:
            batch = pad_batch([encoded[i] for i in group], pad_id, accelerator.device)
            reference = torch.cat([refs[offset + i] for i in group])
            return dpo_pair_terms(model(*batch.inputs).float(), reference, batch, params.beta)
        return group_terms

    result = train_loop(accelerator=accelerator, module=module, n_train=len(train), train_terms=terms(train, 0),
                        n_eval=len(evals), eval_terms=terms(evals, len(train)), names=_PAIR_METRICS,
                        params=params, on_step=on_step, should_stop=should_stop)
    if accelerator.is_main_process:
        save_model(result.module.model, tokenizer, Path(out_dir))
    return run_summary(result, train, evals, stats, eval_stats, timer)
