"""Reward model (InstructGPT step 2): each judgment's K completions forwarded once, loss over its pairs."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.training.common import (CompletionRewards, EncodedItem, StepTimer, TokenBatch, call_stop, encode_items,
                                 forward_groups, item_means, load_reward_model, load_tokenizer, make_accelerator,
                                 pad_batch, pick_device, run_summary, save_model, train_loop)
from app.training.items import RankedItem, TrainingError
from app.training.params import RewardParams

_PAIR_METRICS = ("accuracy", "margin")


def reward_pair_terms(rewards: torch.Tensor, batch: TokenBatch, *, use_margin: bool,
                      center_coef: float) -> dict[str, torch.Tensor]:
    """Per-pair -log sigmoid(r_w - r_l [- margin]) + center_coef (r_w + r_l)^2, with accuracy and margin."""
    r_w, r_l = rewards[batch.winners], rewards[batch.losers]
    diff = r_w - r_l
    losses = -F.logsigmoid(diff - batch.margins if use_margin else diff)
    if center_coef:
        losses = losses + center_coef * (r_w + r_l) ** 2
    return {"losses": losses, "item_losses": item_means(losses, batch), "accuracy": (diff > 0).float(),
            "margin": diff}


def reward_pad_id(tokenizer: Any) -> int:
    """A padding token other than EOS: a sequence classifier reads the score at the last non-pad token."""
    eos = tokenizer.eos_token_id
    for candidate in (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id):
        if candidate is not None and candidate != eos:
            return candidate
    raise TrainingError("the tokenizer has no token besides EOS to pad with (pad, unk and bos are all EOS or unset)")


def mean_reward(module: Any, encoded: list[EncodedItem], *, pad_id: int, accelerator: Any, batch_judgments: int,
                should_stop: Callable[[], None] | None) -> float:
    """The mean reward over every training completion (what is subtracted to centre the rewards)."""
    total = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    count = 0
    module.eval()
    with torch.inference_mode(), accelerator.autocast():
        for group in forward_groups(list(range(len(encoded))), batch_judgments):
            call_stop(should_stop)
            batch = pad_batch([encoded[i] for i in group], pad_id, accelerator.device)
            total += module(*batch.inputs).double().sum()
            count += sum(batch.sizes)
    return total.item() / max(1, count)


def train_reward_model(*, base_path: str, items: list[RankedItem], eval_items: list[RankedItem], out_dir: Path,
                       params: RewardParams, on_step: Callable[[dict], None] | None = None,
                       should_stop: Callable[[], None] | None = None, device: str | None = None) -> dict:
    """Train a reward model on base_path's backbone, save it (centred) to out_dir, return the final figures."""
    timer = StepTimer()
    device = pick_device(device)
    accelerator = make_accelerator(device)
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(base_path)
    pad_id = reward_pad_id(tokenizer)
    train, stats = encode_items(tokenizer, items, params.max_length)
    evals, eval_stats = encode_items(tokenizer, eval_items, params.max_length)
    if not train:
        raise TrainingError(f"none of the {len(items)} training judgments has a non-tied pair to learn from")
    module = CompletionRewards(load_reward_model(base_path, pad_id, params.seed)).to(accelerator.device)

    def terms(encoded: list[EncodedItem]) -> Callable[[Any, list[int]], dict[str, torch.Tensor]]:
        def group_terms(model: Any, group: list[int]) -> dict[str, torch.Tensor]:
            batch = pad_batch([encoded[i] for i in group], pad_id, accelerator.device)
            return reward_pair_terms(model(*batch.inputs).float(), batch, use_margin=params.use_margin,
                                     center_coef=params.center_coef)
        return group_terms

    result = train_loop(accelerator=accelerator, module=module, n_train=len(train), train_terms=terms(train),
                        n_eval=len(evals), eval_terms=terms(evals), names=_PAIR_METRICS, params=params,
                        on_step=on_step, should_stop=should_stop)
    summary = run_summary(result, train, evals, stats, eval_stats, timer)
    if accelerator.is_main_process:
        # Llama's score head has no bias to fold the mean into: it goes into the config, and
        # score_completions subtracts it.
        offset = mean_reward(result.module, train, pad_id=pad_id, accelerator=accelerator,
                             batch_judgments=params.batch_judgments, should_stop=should_stop)
        model = result.module.model
        model.config.reward_mean = offset
        model.config.reward_max_length = params.max_length
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
        save_model(model, tokenizer, Path(out_dir))
        summary["reward_mean"] = offset
    return summary
