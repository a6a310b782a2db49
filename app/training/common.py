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

    if Path(base_path).suffix == ".gguf":
        return rebuild(AutoModelForSequenceClassification, _load_raw(base_path), seed=seed, num_labels=1,
                       pad_token_id=pad_id)
    # From a folder the backbone loads straight into the classifier: only the new head is initialised.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, info = _load_raw(base_path, AutoModelForSequenceClassification, num_labels=1, pad_token_id=pad_id,
                                output_loading_info=True)
    missing = sorted(name for name in info["missing_keys"] if not name.startswith("score."))
    if missing:
        raise TrainingError(f"{base_path!r} has no weights for {missing[:5]} of the reward model's backbone")
    return model


def _load_raw(base_path: str, cls: Any = None, **config_changes: Any) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32, "attn_implementation": "sdpa", **config_changes}
    if Path(base_path).suffix != ".gguf":
        kwargs["use_safetensors"] = True  # never unpickle a checkpoint
    try:
        return _from_pretrained(cls or AutoModelForCausalLM, base_path, **kwargs)
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


# A packed row's attention is computed over the whole row, masked entries too, so rows are kept short:
# at 512 tokens the attention of SmolLM2-135M costs about a quarter of its matmuls on the CPU.
ROW_TOKENS = 512


@dataclass
class TokenBatch:
    """Several judgments packed for one forward: rows of prompts, each followed by some of its completions.

    Every completion attends to its own prompt and its own earlier tokens (a block-diagonal, tree-shaped
    causal mask) at positions that continue the prompt's, so a row computes what separate
    prompt+completion sequences would, with each prompt forwarded once. Judgments share a row while they
    fit in ROW_TOKENS (no padding between them); one that does not fit alone is split over rows, its
    prompt repeated. `inputs` is what CompletionLogps and CompletionRewards take; they return one value
    per completion, judgments in order, `sizes` of them per judgment.
    """

    inputs: tuple[torch.Tensor, ...]
    sizes: list[int]
    winners: torch.Tensor  # per pair: the winner's completion index in the batch
    losers: torch.Tensor
    pair_item: torch.Tensor  # per pair: its judgment's index in the batch
    margins: torch.Tensor


def _chunks(enc: EncodedItem) -> list[tuple[int, int]]:
    """The judgment's completions as ranges [start, end) that fit ROW_TOKENS with the prompt (one at least)."""
    chunks, start, used = [], 0, len(enc.prompt_ids)
    for k, tokens in enumerate(enc.completion_ids):
        if k > start and used + len(tokens) > ROW_TOKENS:
            chunks.append((start, k))
            start, used = k, len(enc.prompt_ids)
        used += len(tokens)
    return chunks + [(start, len(enc.completion_ids))]


def pad_batch(items: list[EncodedItem], pad_id: int, device: Any) -> TokenBatch:
    """The items' tokens packed in rows on device, with index tensors for reading the completions back."""
    offsets = [0]
    for enc in items:
        offsets.append(offsets[-1] + len(enc.completion_ids))
    chunks = [(len(enc.prompt_ids) + sum(map(len, enc.completion_ids[start:end])), i, start, end)
              for i, enc in enumerate(items) for start, end in _chunks(enc)]
    # First fit, longest first: rows come out nearly full and of similar length, so little padding.
    rows: list[list[tuple[int, int, int]]] = []  # (item, first completion, end) per block of a row
    used: list[int] = []
    for size, i, start, end in sorted(chunks, key=lambda chunk: -chunk[0]):
        row = next((r for r, n in enumerate(used) if n + size <= ROW_TOKENS), len(rows))
        if row == len(rows):
            rows.append([])
            used.append(0)
        rows[row].append((i, start, end))
        used[row] += size
    ids, positions, blocks, segments = [], [], [], []
    predictors, targets, completion_of, last = [], [], [], [0] * offsets[-1]
    width = 0
    for row in rows:
        row_ids, row_pos, row_block, row_seg = [], [], [], []
        for block, (i, first, end) in enumerate(row):
            prompt = items[i].prompt_ids
            p, prompt_end = len(prompt), len(row_ids) + len(prompt) - 1
            row_ids += prompt
            row_pos += range(p)
            row_block += [block] * p
            row_seg += [0] * p
            for k in range(first, end):
                tokens = items[i].completion_ids[k]
                at = len(row_ids)
                # Token t of a completion is predicted at the position before it: the prompt's last for t = 0.
                predictors.append((len(ids), prompt_end, at, len(tokens)))
                targets += tokens
                completion_of += [offsets[i] + k] * len(tokens)
                last[offsets[i] + k] = (len(ids), at + len(tokens) - 1)
                row_ids += tokens
                row_pos += range(p, p + len(tokens))
                row_block += [block] * len(tokens)
                row_seg += [k + 1] * len(tokens)
        ids.append(row_ids)
        positions.append(row_pos)
        blocks.append(row_block)
        segments.append(row_seg)
        width = max(width, len(row_ids))
    for row_ids, row_pos, row_block, row_seg in zip(ids, positions, blocks, segments):
        pad = width - len(row_ids)
        row_ids += [pad_id] * pad
        row_pos += [0] * pad
        row_block += [-1] * pad
        row_seg += [-1] * pad
    flat_predictors = [r * width + t for r, prompt_end, at, n in predictors
                       for t in [prompt_end, *range(at, at + n - 1)]]
    winners, losers, pair_item, margins = [], [], [], []
    for i, enc in enumerate(items):
        winners += [offsets[i] + w for w, _ in enc.pairs]
        losers += [offsets[i] + lo for _, lo in enc.pairs]
        pair_item += [i] * len(enc.pairs)
        margins += enc.margins

    def tensor(values: list, dtype: torch.dtype = torch.long) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    block, segment = tensor(blocks), tensor(segments)
    same_block = block.unsqueeze(2) == block.unsqueeze(1)
    query, key = segment.unsqueeze(2), segment.unsqueeze(1)
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    # A real token sees its prompt and its own completion; a pad sees the pads before it (never nothing).
    mask = causal & same_block & ((key == query) | (key == 0))
    inputs = (tensor(ids), tensor(positions), mask.unsqueeze(1), tensor(flat_predictors), tensor(targets),
              tensor(completion_of), tensor([r * width + t for r, t in last]))
    return TokenBatch(inputs, [len(enc.completion_ids) for enc in items], tensor(winners), tensor(losers),
                      tensor(pair_item), tensor(margins, torch.float32))


def item_means(values: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """The mean of per-pair values over each judgment's pairs (every judgment has one at least)."""
    n = len(batch.sizes)
    counts = torch.bincount(batch.pair_item, minlength=n).to(values.dtype)
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, batch.pair_item, values) / counts


# --- the grouped forward ------------------------------------------------------------------------------

def packed_hidden(backbone: nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """The backbone's last hidden states (rows * width, d) over packed rows (see TokenBatch)."""
    if backbone.config._attn_implementation != "sdpa":
        # The tree mask is a boolean 4D mask in scaled_dot_product_attention's convention.
        raise TrainingError(f"training needs the sdpa attention, not {backbone.config._attn_implementation!r}")
    hidden = backbone(input_ids=input_ids, position_ids=position_ids, attention_mask=mask,
                      use_cache=False).last_hidden_state
    return hidden.reshape(-1, hidden.shape[-1])


class CompletionLogps(nn.Module):
    """Summed log-probs of each completion given the prompt (a causal LM, prompt tokens masked)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, mask: torch.Tensor,
                predictors: torch.Tensor, targets: torch.Tensor, completion_of: torch.Tensor,
                last: torch.Tensor) -> torch.Tensor:
        hidden = packed_hidden(self.model.base_model, input_ids, position_ids, mask)
        # The LM head only at completion positions, in float32 even under bf16 autocast (log-ratios of
        # long sums are sensitive), and no full-vocabulary log_softmax kept around.
        logits = _float32_linear(self.model.get_output_embeddings(), hidden[predictors])
        token_logps = logits.gather(1, targets.unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=1)
        return torch.zeros(len(last), device=logits.device, dtype=torch.float32).index_add(0, completion_of,
                                                                                             token_logps)


class CompletionRewards(nn.Module):
    """A scalar reward per completion, read at its last real token (the appended EOS unless truncated)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, mask: torch.Tensor,
                predictors: torch.Tensor, targets: torch.Tensor, completion_of: torch.Tensor,
                last: torch.Tensor) -> torch.Tensor:
        hidden = packed_hidden(self.model.base_model, input_ids, position_ids, mask)
        return _float32_linear(self.model.score, hidden[last]).squeeze(-1)


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


def forward_groups(batch: list[int], size: int) -> list[list[int]]:
    """A step's judgments in forward batches of `size` (batch_judgments), in order."""
    return [batch[i:i + size] for i in range(0, len(batch), size)]


def first_epoch_groups(n_items: int, params: _TrainParams, world: int) -> list[list[int]]:
    """Every process's forward batches of the first epoch, in order (an item may recur under DDP padding).

    A pass over the items with these batches (DPO's reference log-probs) computes exactly what the first
    steps will, with the same shapes, so the first step's loss is exactly ln 2.
    """
    schedule = make_schedule(n_items, params, world)
    return [group for rank in range(world)
            for batch in epoch_batches(list(range(n_items)), schedule, seed=params.seed, epoch=0, rank=rank,
                                       world=world)
            for group in forward_groups(batch, params.batch_judgments)]


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
    """Means over judgments (loss) and over pairs (the named per-pair figures) of one step or one evaluation.

    Sums stay on the device until figures() (one synchronisation per step, not one per forward).
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.item_losses: list[torch.Tensor] = []
        self.sums: list[torch.Tensor] = []
        self.pairs = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        self.item_losses.append(terms["item_losses"].detach().float())
        self.sums.append(torch.stack([terms[name].detach().float().sum() for name in self.names]))
        self.pairs += len(terms["losses"])

    def figures(self, prefix: str = "") -> dict[str, float]:
        loss, *sums = torch.cat([torch.cat(self.item_losses).mean().unsqueeze(0),
                                 torch.stack(self.sums).sum(0)]).tolist()
        return {f"{prefix}loss": loss} | {f"{prefix}{name}": total / max(1, self.pairs)
                                          for name, total in zip(self.names, sums)}


# The terms of one forward batch: per-pair "losses" and named figures, and "item_losses", each judgment's
# mean over its pairs.
GroupTerms = Callable[[nn.Module, list[int]], dict[str, torch.Tensor]]


def evaluate(module: nn.Module, n_items: int, terms: GroupTerms, names: tuple[str, ...], accelerator: Any,
             batch_judgments: int) -> dict[str, float]:
    """Held-out figures (eval/ prefix): the same terms, in eval mode without grads."""
    stats = PairStats(names)
    module.eval()
    with torch.inference_mode(), accelerator.autocast():
        for group in forward_groups(list(range(n_items)), batch_judgments):
            stats.add(terms(module, group))
    module.train()
    return stats.figures("eval/") | {"eval/pairs": stats.pairs}


@dataclass
class LoopResult:
    module: nn.Module  # unwrapped
    steps: int
    epochs: int
    last: dict[str, float]
    last_eval: dict[str, float]


def train_loop(*, accelerator: Any, module: nn.Module, n_train: int, train_terms: GroupTerms, n_eval: int,
               eval_terms: GroupTerms, names: tuple[str, ...], params: _TrainParams,
               on_step: Callable[[dict], None] | None, should_stop: Callable[[], None] | None) -> LoopResult:
    """AdamW with linear decay; batch_judgments judgments a forward, grad_accum forwards a step.

    Each forward batch's loss is backpropagated as soon as it is computed (its judgments' losses over the
    judgments in the step), so one batch's activations are alive at a time; DDP syncs gradients on the
    step's last one. Calls should_stop before every step and, on the main process, on_step after it (and
    after each epoch's evaluation, which the main process runs alone).
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
            groups = forward_groups(batch, params.batch_judgments)
            for n, group in enumerate(groups):
                with nullcontext() if n == len(groups) - 1 else accelerator.no_sync(module):
                    with accelerator.autocast():
                        terms = train_terms(module, group)
                    accelerator.backward(terms["item_losses"].sum() / len(batch))
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
            last_eval = evaluate(accelerator.unwrap_model(module), n_eval, eval_terms, names, accelerator,
                                 params.batch_judgments)
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
