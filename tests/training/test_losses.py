"""Grouped losses (each judgment's prompt forwarded once) against TRL's pair-by-pair computation."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from app.training.common import (CompletionLogps, CompletionRewards, encode_items, load_causal_lm,
                                 load_reward_model, load_tokenizer, pad_batch)
from app.training.dpo import dpo_pair_terms
from app.training.items import RankedItem
from app.training.reward import reward_pad_id, reward_pair_terms

WORDS = "the cat sat on a mat and then it ran far away from home to see the sea".split()


def ranked_items(seed: int = 0) -> list[RankedItem]:
    """K = 2..5, ties included, texts of different lengths; chat and plain prompts."""
    rnd = random.Random(seed)
    items = []
    for k, ranks in [(2, [2, 1]), (3, [1, 1, 2]), (4, [3, 1, 2, 2]), (5, [1, 2, 3, 4, 5]), (5, [2, 2, 1, 3, 3])]:
        completions = [" ".join(rnd.choices(WORDS, k=rnd.randint(1, 30))) for _ in range(k)]
        prompt = ([{"role": "user", "content": f"tell me {k} things"}] if k % 2 else f"Question {k}: what now?")
        items.append(RankedItem(prompt=prompt, completions=completions, ranks=ranks, prompt_id=k))
    return items


def trl_logps(model, prompt: list[int], completion: list[list[int]], pad_id: int, device: str = "cpu") -> torch.Tensor:
    """TRL's way: prompt+completion sequences concatenated, full forward, log_softmax, gather, prompt masked."""
    seqs = [prompt + c for c in completion]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], device=device)
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
    logits = model(input_ids=ids, attention_mask=attention).logits.float()
    logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
    loss_mask = torch.zeros_like(ids[:, 1:], dtype=torch.bool)
    for row, c in enumerate(completion):
        loss_mask[row, len(prompt) - 1:len(prompt) - 1 + len(c)] = True
    return (logps * loss_mask).sum(1)


def grouped_dpo_loss(policy, ref_model, encoded, pad: int, beta: float, device: str = "cpu") -> torch.Tensor:
    """Preflab's way: all judgments packed into one forward, each judgment's loss the mean over its pairs."""
    batch = pad_batch(encoded, pad, device)
    with torch.no_grad():
        ref = CompletionLogps(ref_model)(*batch.inputs)
    return dpo_pair_terms(policy(*batch.inputs), ref, batch, beta)["item_losses"].mean()


def pairwise_dpo_loss(policy, ref_model, encoded, pad: int, beta: float, device: str = "cpu") -> torch.Tensor:
    """TRL's way: every pair forwarded as its own chosen and rejected sequences."""
    item_losses = []
    for enc in encoded:
        pair_losses = []
        for w, lo in enc.pairs:
            chosen_rejected = [enc.completion_ids[w], enc.completion_ids[lo]]
            with torch.no_grad():
                ref = trl_logps(ref_model, enc.prompt_ids, chosen_rejected, pad, device)
            pol = trl_logps(policy, enc.prompt_ids, chosen_rejected, pad, device)
            pair_losses.append(-F.logsigmoid(beta * ((pol[0] - ref[0]) - (pol[1] - ref[1]))))
        item_losses.append(torch.stack(pair_losses).mean())
    return torch.stack(item_losses).mean()


def grouped_reward_loss(module, encoded, pad: int, coef: float, device: str = "cpu") -> torch.Tensor:
    batch = pad_batch(encoded, pad, device)
    return reward_pair_terms(module(*batch.inputs), batch, use_margin=True, center_coef=coef)["item_losses"].mean()


def pairwise_reward_loss(model, encoded, pad: int, coef: float, device: str = "cpu") -> torch.Tensor:
    """Each pair as two padded sequences, scored by transformers' own pooling (last non-pad token)."""
    item_losses = []
    for enc in encoded:
        pair_losses = []
        for (w, lo), margin in zip(enc.pairs, enc.margins):
            seqs = [enc.prompt_ids + enc.completion_ids[w], enc.prompt_ids + enc.completion_ids[lo]]
            width = max(map(len, seqs))
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
            attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
            r = model(input_ids=ids, attention_mask=attention).logits.squeeze(-1).float()
            pair_losses.append(-F.logsigmoid(r[0] - r[1] - margin) + coef * (r[0] + r[1]) ** 2)
        item_losses.append(torch.stack(pair_losses).mean())
    return torch.stack(item_losses).mean()


def test_grouped_dpo_loss_and_gradients_equal_pair_by_pair(tiny_model_dir, tmp_path):
    from tests.policy.models import build_tiny_model

    tokenizer = load_tokenizer(str(tiny_model_dir))
    encoded, stats = encode_items(tokenizer, ranked_items(), max_length=60)
    assert len(encoded) == 5 and stats.truncated_completions > 0  # truncation is part of what is checked
    pad = tokenizer.pad_token_id
    ref_model = load_causal_lm(str(build_tiny_model(tmp_path / "ref", tokenizer_dir=tiny_model_dir, seed=1))).eval()
    beta = 0.3

    grouped = CompletionLogps(load_causal_lm(str(tiny_model_dir)))
    pairwise = load_causal_lm(str(tiny_model_dir))
    grouped_loss = grouped_dpo_loss(grouped, ref_model, encoded, pad, beta)
    grouped_loss.backward()
    pairwise_loss = pairwise_dpo_loss(pairwise, ref_model, encoded, pad, beta)
    pairwise_loss.backward()

    assert sum(len(e.pairs) for e in encoded) == 1 + 2 + 5 + 10 + 8
    assert grouped_loss.item() == pytest.approx(pairwise_loss.item(), abs=1e-5)
    assert abs(grouped_loss.item() - math.log(2)) > 1e-3  # the reference differs, so the loss is not trivial
    grads = dict(grouped.model.named_parameters())
    for name, param in pairwise.named_parameters():
        assert torch.allclose(grads[name].grad, param.grad, atol=1e-5, rtol=1e-4), name


def test_grouped_reward_loss_and_gradients_equal_pair_by_pair(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    pad = reward_pad_id(tokenizer)
    assert pad != tokenizer.eos_token_id
    encoded, _ = encode_items(tokenizer, ranked_items(seed=3), max_length=60)
    grouped = CompletionRewards(load_reward_model(str(tiny_model_dir), pad))
    pairwise = load_reward_model(str(tiny_model_dir), pad)
    coef = 0.05

    grouped_loss = grouped_reward_loss(grouped, encoded, pad, coef)
    grouped_loss.backward()
    pairwise_loss = pairwise_reward_loss(pairwise, encoded, pad, coef)
    pairwise_loss.backward()

    assert grouped_loss.item() == pytest.approx(pairwise_loss.item(), abs=1e-5)
    grads = dict(grouped.model.named_parameters())
    for name, param in pairwise.named_parameters():
        assert torch.allclose(grads[name].grad, param.grad, atol=1e-5, rtol=1e-4), name
    assert grads["score.weight"].grad.abs().sum() > 0
    reseeded = load_reward_model(str(tiny_model_dir), pad, seed=1)
    assert not torch.equal(reseeded.score.weight, load_reward_model(str(tiny_model_dir), pad).score.weight)
    assert torch.equal(reseeded.model.norm.weight, pairwise.model.norm.weight)  # only the new head depends on it


def test_packing_rows_and_forward_batches_leave_every_completion_the_same_values(tiny_model_dir, monkeypatch):
    import app.training.common as common

    tokenizer = load_tokenizer(str(tiny_model_dir))
    pad = reward_pad_id(tokenizer)
    encoded, _ = encode_items(tokenizer, ranked_items(seed=5), max_length=60)
    logps = CompletionLogps(load_causal_lm(str(tiny_model_dir))).eval()
    rewards = CompletionRewards(load_reward_model(str(tiny_model_dir), pad)).eval()
    with torch.no_grad():
        together = pad_batch(encoded, pad, "cpu")
        assert together.inputs[0].shape[0] == 1 and together.sizes == [2, 3, 4, 5, 5]  # all in one row
        one_by_one = [pad_batch([enc], pad, "cpu") for enc in encoded]
        monkeypatch.setattr(common, "ROW_TOKENS", 1)  # every completion in a row of its own, with its prompt
        split = pad_batch(encoded, pad, "cpu")
        assert split.inputs[0].shape[0] == 19
        for module in (logps, rewards):
            values = module(*together.inputs)
            assert values.shape == (19,) and bool(torch.isfinite(values).all())
            assert torch.allclose(values, torch.cat([module(*b.inputs) for b in one_by_one]), atol=1e-5)
            assert torch.allclose(values, module(*split.inputs), atol=1e-5)
        # Each completion's log-prob is what a forward of prompt + completion alone gives.
        enc = encoded[3]
        alone = trl_logps(logps.model, enc.prompt_ids, enc.completion_ids, pad)
        assert torch.allclose(logps(*together.inputs)[2 + 3 + 4:2 + 3 + 4 + 5], alone, atol=1e-4)


def test_encoding_appends_eos_counts_truncation_and_keeps_ties_out_of_pairs(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    item = RankedItem(prompt="Say something.", completions=["short", "a b c d e f g h i j k l m n o p", "short"],
                      ranks=[1, 2, 1])
    prompt_len = len(tokenizer.apply_chat_template([{"role": "user", "content": "Say something."}],
                                                   add_generation_prompt=True, tokenize=True, return_dict=False))
    long_enough, stats = encode_items(tokenizer, [item], max_length=256)
    enc = long_enough[0]
    assert enc.pairs == [(0, 1), (2, 1)]  # the tie between 0 and 2 is no pair
    assert len(enc.prompt_ids) == prompt_len
    assert all(c[-1] == tokenizer.eos_token_id for c in enc.completion_ids)
    assert tokenizer.decode(enc.completion_ids[0][:-1]) == "short"
    assert stats.truncated_completions == 0
    cut, stats = encode_items(tokenizer, [item], max_length=prompt_len + 5)
    assert stats.truncated_completions == 1 and [len(c) for c in cut[0].completion_ids] == [2, 5, 2]
    assert cut[0].completion_ids[1][-1] != tokenizer.eos_token_id
    _, stats = encode_items(tokenizer, [item], max_length=prompt_len - 1)
    assert stats.truncated_prompts == 1
    _, stats = encode_items(tokenizer, [RankedItem(prompt="x", completions=["a", "b"], ranks=[1, 1])], 64)
    assert stats.all_tied == 1
