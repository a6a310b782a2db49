"""What both trainers share: loading, tokenising ranked items, the grouped forward, the step loop."""

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.policy.base import PolicyError, PromptSpec
from app.policy.transformers_backend import _from_pretrained, render_prompt
from app.training.items import RankedItem, TrainingError
from app.training.params import _TrainParams


# --- loading and saving ---------------------------------------------------------------------------------

def load_tokenizer(base_path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = _from_pretrained(AutoTokenizer, base_path)
    except PolicyError as exc:
        raise TrainingError(str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise TrainingError(f"could not load the tokenizer of {base_path!r}: {exc}") from exc
    if tokenizer.eos_token_id is None:
        raise TrainingError(f"the tokenizer of {base_path!r} has no EOS token to end completions with")
    return tokenizer


def load_causal_lm(base_path: str) -> Any:
    """The base model in float32, as a plain (saveable) transformers model even when it came from a GGUF file."""
    from transformers import AutoModelForCausalLM

    model = _load_raw(base_path)
    return rebuild(AutoModelForCausalLM, model) if Path(base_path).suffix == ".gguf" else model


def load_reward_model(base_path: str, pad_id: int, seed: int = 0) -> Any:
    """A sequence classifier (one label) on the base model's backbone, with a score head drawn from seed."""
    from transformers import AutoModelForSequenceClassification

    return rebuild(AutoModelForSequenceClassification, _load_raw(base_path), seed=seed, num_labels=1,
                   pad_token_id=pad_id)


def _load_raw(base_path: str) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if Path(base_path).suffix != ".gguf":
        kwargs["use_safetensors"] = True  # never unpickle a checkpoint
    try:
        return _from_pretrained(AutoModelForCausalLM, base_path, **kwargs)
    except PolicyError as exc:
        raise TrainingError(str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise TrainingError(f"could not load the model {base_path!r}: {exc}") from exc


def rebuild(cls: Any, model: Any, *, seed: int = 0, **config_changes: Any) -> Any:
    """The same weights in a fresh model of class cls (GGUF-loaded models refuse save_pretrained).

    Weights the new class has and the old one lacks (a score head) keep their fresh initialisation.
    """
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    for key, value in config_changes.items():
        setattr(config, key, value)
    with torch.random.fork_rng(devices=[]):  # a new head's initialisation depends on the seed alone
        torch.manual_seed(seed)
        fresh = cls.from_config(config, dtype=torch.float32)
    result = fresh.load_state_dict(model.state_dict(), strict=False)
    expected_missing = {name for name in fresh.state_dict() if name.startswith("score.")}
    missing = set(result.missing_keys) - expected_missing
    # The tied LM head is not a separate tensor in every class.
    missing -= {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if missing:
        raise TrainingError(f"rebuilding {type(model).__name__} as {cls.__name__} left weights unset: {sorted(missing)}")
    if hasattr(fresh, "tie_weights"):
        fresh.tie_weights()
    fresh.generation_config = model.generation_config
    return fresh


def save_model(model: Any, tokenizer: Any, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def pick_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def make_accelerator(device: str) -> Any:
    """Single process here; the same loop runs under `accelerate launch` (DDP) unchanged."""
    from accelerate import Accelerator

    on_cuda = device.startswith("cuda")
    return Accelerator(cpu=not on_cuda, mixed_precision="bf16" if on_cuda else "no")


def make_optimizer(params: list[nn.Parameter], *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, fused where the device supports it, else the multi-tensor (foreach) kernel."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


# --- tokenising -----------------------------------------------------------------------------------------

@dataclass
class EncodedItem:
    """One judgment in tokens: the prompt once, K completions (each ending in EOS unless truncated)."""

    prompt_ids: list[int]
    completion_ids: list[list[int]]
    pairs: list[tuple[int, int]]  # (winner, loser) indices, non-tied only
    margins: list[float]  # rank difference per pair (the optional reward-model margin)
    truncated_completions: int = 0
    truncated_prompt: bool = False
    boundary_mismatch: bool = False


@dataclass
class EncodeStats:
    truncated_completions: int = 0
    truncated_prompts: int = 0
    boundary_mismatches: int = 0
    all_tied: int = 0  # judgments with no non-tied pair (nothing to learn from), left out

    def as_dict(self) -> dict[str, int]:
        return {"truncated_completions": self.truncated_completions, "truncated_prompts": self.truncated_prompts,
                "prompt_boundary_mismatches": self.boundary_mismatches, "all_tied_judgments": self.all_tied}


def _as_spec(prompt: str | list[dict[str, str]]) -> PromptSpec:
    if isinstance(prompt, str):
        return PromptSpec(text=prompt)
    return PromptSpec(text="", messages=list(prompt))


def encode_item(tokenizer: Any, item: RankedItem, max_length: int) -> EncodedItem:
    """One judgment in tokens, with its non-tied pairs (see encode_completions)."""
    enc = encode_completions(tokenizer, item.prompt, item.completions, max_length)
    enc.pairs = item.pairs()
    enc.margins = [float(item.ranks[lo] - item.ranks[w]) for w, lo in enc.pairs]
    return enc


def encode_completions(tokenizer: Any, prompt: str | list[dict[str, str]], texts: list[str],
                       max_length: int) -> EncodedItem:
    """Tokenise prompt (with the chat template's generation prompt) and prompt+completion+EOS.

    The completion's tokens are what follows the prompt's tokens in the joint tokenisation; where the
    boundary merges (the prompt is not a prefix) the completion is tokenised on its own instead, as the
    model produced it after exactly those prompt tokens. Over max_length, a prompt keeps its last
    max_length // 2 tokens and completions are cut to what is left; both are counted.
    """
    special = not tokenizer.chat_template  # a chat template already writes any BOS the model wants
    rendered = render_prompt(tokenizer, _as_spec(prompt))
    prompt_ids = tokenizer(rendered, add_special_tokens=special)["input_ids"]
    eos = tokenizer.eos_token_id
    completions, mismatch = [], False
    for text in texts:
        full = tokenizer(rendered + text, add_special_tokens=special)["input_ids"]
        if full[:len(prompt_ids)] == prompt_ids:
            ids = full[len(prompt_ids):]
        else:
            mismatch = True
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        completions.append(list(ids) + [eos])
    truncated_prompt = len(prompt_ids) >= max_length
    if truncated_prompt:
        prompt_ids = prompt_ids[-(max_length // 2):]
    budget = max_length - len(prompt_ids)
    truncated = sum(len(c) > budget for c in completions)
    completions = [c[:budget] for c in completions]
    return EncodedItem(list(prompt_ids), completions, [], [], truncated, truncated_prompt, mismatch)


def encode_items(tokenizer: Any, items: list[RankedItem], max_length: int) -> tuple[list[EncodedItem], EncodeStats]:
    """Encoded items with at least one non-tied pair, and counts of what was truncated or left out."""
    stats = EncodeStats()
    out = []
    for item in items:
        enc = encode_item(tokenizer, item, max_length)
        stats.truncated_completions += enc.truncated_completions
        stats.truncated_prompts += enc.truncated_prompt
        stats.boundary_mismatches += enc.boundary_mismatch
        if not enc.pairs:
            stats.all_tied += 1
            continue
        out.append(enc)
    return out, stats


def pad_completions(item: EncodedItem, pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prompt (1, P), completions right-padded (K, C), lengths (K,)) on device."""
    lengths = [len(c) for c in item.completion_ids]
    width = max(lengths)
    rows = [c + [pad_id] * (width - len(c)) for c in item.completion_ids]
    return (torch.tensor([item.prompt_ids], device=device), torch.tensor(rows, device=device),
            torch.tensor(lengths, device=device))


# --- the grouped forward ------------------------------------------------------------------------------

def grouped_hidden(backbone: nn.Module, prompt: torch.Tensor, completions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward the prompt once, then all K completions on its key/value cache (expanded K times).

    Gradients flow through the cache into the prompt's forward. Completions are right-padded, so a real
    token never attends to a pad (pads only follow it): no attention mask is needed. Returns the
    prompt's last hidden state (1, d) and the completions' hidden states (K, C, d).
    """
    k, width = completions.shape
    p = prompt.shape[1]
    out = backbone(input_ids=prompt, use_cache=True)
    prompt_last = out.last_hidden_state[:, -1]
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)
    positions = torch.arange(p, p + width, device=prompt.device).unsqueeze(0).expand(k, -1)
    out = backbone(input_ids=completions, past_key_values=cache, use_cache=True, position_ids=positions,
                   cache_position=torch.arange(p, p + width, device=prompt.device))
    return prompt_last, out.last_hidden_state


class CompletionLogps(nn.Module):
    """Summed log-probs of each completion given the prompt (a causal LM, prompt tokens masked)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, prompt: torch.Tensor, completions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        prompt_last, hidden = grouped_hidden(self.model.base_model, prompt, completions)
        k, width = completions.shape
        # Position t predicts completion token t: the prompt's last state predicts token 0.
        predictors = torch.cat([prompt_last.expand(k, -1).unsqueeze(1), hidden[:, :width - 1]], dim=1)
        mask = torch.arange(width, device=completions.device).unsqueeze(0) < lengths.unsqueeze(1)
        # The LM head only at completion positions, in float32 even under bf16 autocast (log-ratios of
        # long sums are sensitive), and no full-vocabulary log_softmax kept around.
        logits = _float32_linear(self.model.get_output_embeddings(), predictors[mask])
        token_logps = logits.gather(1, completions[mask].unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=1)
        rows = torch.arange(k, device=completions.device).unsqueeze(1).expand(k, width)[mask]
        return torch.zeros(k, device=completions.device, dtype=torch.float32).index_add(0, rows, token_logps)


class CompletionRewards(nn.Module):
    """A scalar reward per completion, read at its last real token (the appended EOS unless truncated)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, prompt: torch.Tensor, completions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _, hidden = grouped_hidden(self.model.base_model, prompt, completions)
        last = hidden[torch.arange(completions.shape[0], device=completions.device), lengths - 1]
        return _float32_linear(self.model.score, last).squeeze(-1)


def _float32_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(device_type=x.device.type, enabled=False):
        bias = None if layer.bias is None else layer.bias.float()
        return F.linear(x.float(), layer.weight.float(), bias)


# --- the step loop --------------------------------------------------------------------------------------

@dataclass
class Schedule:
    per_step: int  # judgments per optimizer step (this process)
    steps_per_epoch: int
    total_steps: int
    epochs: int


def make_schedule(n_items: int, params: _TrainParams, world: int) -> Schedule:
    per_step = params.batch_judgments * params.grad_accum
    per_process = math.ceil(n_items / world)
    steps_per_epoch = max(1, math.ceil(per_process / per_step))
    total = steps_per_epoch * params.epochs
    if params.max_steps is not None:
        total = min(total, params.max_steps)
    return Schedule(per_step, steps_per_epoch, total, math.ceil(total / steps_per_epoch))


def epoch_batches(items: list[Any], schedule: Schedule, *, seed: int, epoch: int, rank: int,
                  world: int) -> Iterator[list[Any]]:
    """This process's judgments for each optimizer step of an epoch, shuffled per epoch.

    Every process gets the same number (the list is wrapped around, as DistributedSampler does), so
    gradient synchronisation lines up under `accelerate launch`.
    """
    order = list(range(len(items)))
    random.Random(seed * 1000 + epoch).shuffle(order)
    per_process = math.ceil(len(order) / world)
    padded = (order * (world + 1))[:per_process * world]
    mine = padded[rank::world]
    for start in range(0, len(mine), schedule.per_step):
        yield [items[i] for i in mine[start:start + schedule.per_step]]


def linear_lr(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear decay to zero over the run, no warm-up (transformers' and TRL's default)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))


@dataclass
class StepTimer:
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return time.perf_counter() - self.started


def call_stop(should_stop: Callable[[], None] | None) -> None:
    if should_stop is not None:
        should_stop()


class PairStats:
    """Means over items (loss) and over pairs (the named per-pair figures) of one step or one evaluation."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.item_losses: list[float] = []
        self.sums = dict.fromkeys(names, 0.0)
        self.pairs = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        self.item_losses.append(terms["losses"].detach().mean().item())
        for name in self.names:
            self.sums[name] += terms[name].detach().float().sum().item()
        self.pairs += len(terms["losses"])

    def figures(self, prefix: str = "") -> dict[str, float]:
        out = {f"{prefix}loss": sum(self.item_losses) / max(1, len(self.item_losses))}
        out.update({f"{prefix}{name}": total / max(1, self.pairs) for name, total in self.sums.items()})
        return out


ItemTerms = Callable[[nn.Module, int], dict[str, torch.Tensor]]


def evaluate(module: nn.Module, n_items: int, terms: ItemTerms, names: tuple[str, ...],
             accelerator: Any) -> dict[str, float]:
    """Held-out figures (eval/ prefix): the same per-item terms, in eval mode without grads."""
    stats = PairStats(names)
    module.eval()
    with torch.inference_mode(), accelerator.autocast():
        for i in range(n_items):
            stats.add(terms(module, i))
    module.train()
    return stats.figures("eval/") | {"eval/pairs": stats.pairs}


@dataclass
class LoopResult:
    module: nn.Module  # unwrapped
    steps: int
    epochs: int
    last: dict[str, float]
    last_eval: dict[str, float]


def train_loop(*, accelerator: Any, module: nn.Module, n_train: int, train_terms: ItemTerms, n_eval: int,
               eval_terms: ItemTerms, names: tuple[str, ...], params: _TrainParams,
               on_step: Callable[[dict], None] | None, should_stop: Callable[[], None] | None) -> LoopResult:
    """AdamW with linear decay; one judgment per forward, batch_judgments x grad_accum judgments a step.

    Each judgment's loss is backpropagated as soon as it is computed (scaled by 1 / judgments per step),
    so only one judgment's activations are alive at a time; DDP syncs gradients on the step's last one.
    Calls should_stop before every step and, on the main process, on_step after it (and after each
    epoch's evaluation, which the main process runs alone).
    """
    schedule = make_schedule(n_train, params, accelerator.num_processes)
    optimizer = make_optimizer(list(module.parameters()), lr=params.lr, weight_decay=params.weight_decay)
    module, optimizer = accelerator.prepare(module, optimizer)
    scheduler = linear_lr(optimizer, schedule.total_steps)
    module.train()
    step, last, last_eval = 0, {}, {}
    for epoch in range(schedule.epochs):
        for batch in epoch_batches(list(range(n_train)), schedule, seed=params.seed, epoch=epoch,
                                   rank=accelerator.process_index, world=accelerator.num_processes):
            if step >= schedule.total_steps:
                break
            call_stop(should_stop)
            stats = PairStats(names)
            for n, i in enumerate(batch):
                with nullcontext() if n == len(batch) - 1 else accelerator.no_sync(module):
                    with accelerator.autocast():
                        terms = train_terms(module, i)
                    accelerator.backward(terms["losses"].mean() / len(batch))
                stats.add(terms)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last = stats.figures()
            if on_step is not None and accelerator.is_main_process:
                on_step({"step": step, "total_steps": schedule.total_steps, "epoch": epoch + 1, "lr": lr,
                         "pairs": stats.pairs, **last})
        if n_eval and accelerator.is_main_process:
            last_eval = evaluate(accelerator.unwrap_model(module), n_eval, eval_terms, names, accelerator)
            if on_step is not None:
                on_step({"step": step, "total_steps": schedule.total_steps, "epoch": epoch + 1, **last_eval})
    accelerator.wait_for_everyone()
    return LoopResult(accelerator.unwrap_model(module), step, schedule.epochs, last, last_eval)


def run_summary(result: LoopResult, train: list[EncodedItem], evals: list[EncodedItem], stats: EncodeStats,
                eval_stats: EncodeStats, timer: StepTimer) -> dict:
    """The figures a trainer returns: the last step's and evaluation's, counts, and time."""
    counts = {name: value + eval_stats.as_dict()[name] for name, value in stats.as_dict().items()}
    pairs = sum(len(enc.pairs) for enc in train)
    return {**result.last, **result.last_eval, "steps": result.steps, "epochs": result.epochs,
            "judgments": len(train), "pairs": pairs, "eval_judgments": len(evals),
            "eval_pairs": sum(len(enc.pairs) for enc in evals), **counts, "seconds": timer.seconds()}
