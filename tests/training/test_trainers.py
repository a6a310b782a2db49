"""The trainers on a synthetic preference (the shorter completion wins), and what they save."""

import math
import random

import pytest
import torch

from app.training.dpo import train_dpo
from app.training.items import RankedItem, TrainingError, split_by_prompt
from app.training.params import DPOParams, RewardParams
from app.training.reward import train_reward_model
from app.training.score import score_completions

WORDS = "red blue green cat dog sun moon tree river stone bird fish apple bread salt wind".split()


def shorter_wins(n_prompts: int, k: int = 3, seed: int = 0) -> list[RankedItem]:
    rnd = random.Random(seed)
    items = []
    for p in range(n_prompts):
        lengths = rnd.sample(range(2, 24), k)
        completions = [" ".join(rnd.choices(WORDS, k=n)) for n in lengths]
        ranks = [sorted(lengths).index(n) + 1 for n in lengths]
        items.append(RankedItem(prompt=f"Say some words about {rnd.choice(WORDS)} ({p}).", completions=completions,
                                ranks=ranks, prompt_id=p, judgment_id=p))
    return items


def transformers_scores(model, tokenizer, prompt: str, texts: list[str]) -> list[float]:
    """Raw rewards as transformers computes them: padded sequences, its own last-non-pad-token pooling."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=False)
    batch = tokenizer([rendered + t + tokenizer.eos_token for t in texts], add_special_tokens=False,
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.squeeze(-1).tolist()


def test_reward_model_learns_shorter_wins_and_scores_like_transformers(tiny_model_dir, tmp_path):
    train, held_out = split_by_prompt(shorter_wins(80), eval_fraction=0.25, seed=0)
    steps = []
    result = train_reward_model(base_path=str(tiny_model_dir), items=train, eval_items=held_out,
                                out_dir=tmp_path / "rm", params=RewardParams(lr=3e-3, epochs=3, batch_judgments=4),
                                on_step=steps.append)
    print(result)
    assert result["eval/accuracy"] >= 0.9
    assert result["judgments"] == 60 and result["pairs"] == 180 and result["eval_pairs"] == 60
    train_steps = [s for s in steps if "loss" in s]
    assert [s["step"] for s in train_steps] == list(range(1, 46)) and train_steps[-1]["total_steps"] == 45
    assert {"loss", "lr", "accuracy", "margin", "epoch"} <= set(train_steps[0])
    assert sum(1 for s in steps if "eval/accuracy" in s) == 3

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    prompts = [item.prompt for item in held_out[:3]]
    completions = [list(item.completions) for item in held_out[:3]]
    scores = score_completions(reward_path=str(tmp_path / "rm"), prompts=prompts, completions=completions)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "rm")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.pad_token_id != tokenizer.eos_token_id
    offset = model.config.reward_mean
    assert offset == pytest.approx(result["reward_mean"])
    for prompt, texts, row in zip(prompts, completions, scores):
        assert row == pytest.approx([r - offset for r in transformers_scores(model, tokenizer, prompt, texts)],
                                    abs=1e-4)


def test_reward_model_is_centred_on_its_training_set(tiny_model_dir, tmp_path):
    items = shorter_wins(12, seed=5)
    train_reward_model(base_path=str(tiny_model_dir), items=items, eval_items=[], out_dir=tmp_path / "rm",
                       params=RewardParams(lr=1e-3, max_steps=3))
    scores = score_completions(reward_path=str(tmp_path / "rm"), prompts=[i.prompt for i in items],
                               completions=[i.completions for i in items], batch_size=2)
    flat = [s for row in scores for s in row]
    assert len(flat) == 36 and abs(sum(flat) / len(flat)) < 1e-4
    assert max(flat) - min(flat) > 1e-3
    from app.training.score import load_scorer

    assert load_scorer(str(tmp_path / "rm"), "cpu") is load_scorer(str(tmp_path / "rm"), "cpu")  # kept loaded
    assert score_completions(reward_path=str(tmp_path / "rm"), prompts=[items[0].prompt, "other"],
                             completions=[items[0].completions[:1], []]) == [pytest.approx(scores[0][:1]), []]
    with pytest.raises(TrainingError, match="no config.json"):
        score_completions(reward_path=str(tmp_path), prompts=["p"], completions=[["c"]])


def test_dpo_learns_shorter_wins_and_saves_a_causal_lm(tiny_model_dir, tmp_path):
    train, held_out = split_by_prompt(shorter_wins(80, seed=1), eval_fraction=0.25, seed=0)
    steps = []
    result = train_dpo(base_path=str(tiny_model_dir), items=train, eval_items=held_out, out_dir=tmp_path / "dpo",
                       params=DPOParams(lr=2e-3, beta=0.1, epochs=2, batch_judgments=4), on_step=steps.append,
                       ref_cache_dir=tmp_path / "cache", cache_key="snapshot-1")
    print(result)
    assert steps[0]["step"] == 1 and steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert steps[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "logps/chosen", "logps/rejected",
            "lr", "total_steps"} <= set(steps[0])
    assert result["eval/rewards/accuracies"] >= 0.8
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo", use_safetensors=True)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert not hasattr(model.config, "quantization_config")


def test_dpo_reads_reference_logps_from_the_cache_and_cancels_between_steps(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    items = shorter_wins(6, seed=2)
    params = DPOParams(lr=1e-3, max_steps=1, batch_judgments=6)
    first = []
    train_dpo(base_path=str(tiny_model_dir), items=items, eval_items=[], out_dir=tmp_path / "a", params=params,
              on_step=first.append, ref_cache_dir=tmp_path / "cache", cache_key="s1")
    assert first[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    [cached] = (tmp_path / "cache").glob("*.safetensors")
    logps = load_file(cached)["logps"]
    assert logps.shape == (18,) and bool((logps < 0).all())
    # Shift the cached reference of every completion by its length: a run that reads the cache no
    # longer starts at ln 2, one that recomputed it would.
    save_file({"logps": logps - torch.arange(18, dtype=torch.float32) * 0.5}, str(cached))
    again = []
    train_dpo(base_path=str(tiny_model_dir), items=items, eval_items=[], out_dir=tmp_path / "b", params=params,
              on_step=again.append, ref_cache_dir=tmp_path / "cache", cache_key="s1")
    assert abs(again[0]["loss"] - math.log(2)) > 1e-3
    other = []
    train_dpo(base_path=str(tiny_model_dir), items=items, eval_items=[], out_dir=tmp_path / "c",
              params=params.model_copy(update={"max_length": 256}), on_step=other.append,
              ref_cache_dir=tmp_path / "cache", cache_key="s1")
    assert other[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # max_length is part of the key
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2

    class Cancelled(Exception):
        pass

    calls = []

    def should_stop():
        calls.append(1)
        if len(calls) > 6 + 1:  # the reference pass (6 judgments) and the first step go through
            raise Cancelled

    with pytest.raises(Cancelled):
        train_dpo(base_path=str(tiny_model_dir), items=items, eval_items=[], out_dir=tmp_path / "d",
                  params=DPOParams(lr=1e-3, batch_judgments=1, epochs=2), should_stop=should_stop)
    assert not (tmp_path / "d").exists()
