"""The torch-free half: parameters the web validates, ranked items and the held-out split."""

import pytest
from pydantic import ValidationError

from app.training.items import RankedItem, split_by_prompt
from app.training.params import DPOParams, RewardParams


def test_params_defaults_and_validation_name_the_bad_field():
    assert RewardParams().model_dump() == {
        "epochs": 1, "batch_judgments": 4, "grad_accum": 1, "max_length": 512, "eval_fraction": 0.1, "seed": 0,
        "max_steps": None, "weight_decay": 0.0, "lr": 1e-5, "use_margin": False, "center_coef": 0.01}
    assert DPOParams().beta == 0.1 and DPOParams().lr == 1e-6
    assert DPOParams.model_validate({"beta": 0.5, "max_steps": 3}).max_steps == 3
    for bad, field in [({"lr": 0}, "lr"), ({"beta": -1}, "beta"), ({"eval_fraction": 1.0}, "eval_fraction"),
                       ({"batch_judgments": 0}, "batch_judgments"), ({"learning_rate": 1e-5}, "learning_rate"),
                       ({"max_length": 4}, "max_length")]:
        with pytest.raises(ValidationError) as exc:
            DPOParams.model_validate(bad)
        assert exc.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError):
        DPOParams.model_validate({"use_margin": True})  # a reward-model option is no DPO parameter


def test_ranked_item_pairs_skip_ties_and_bad_items_are_refused():
    item = RankedItem(prompt="p", completions=["a", "b", "c", "d"], ranks=[2, 1, 2, 3])
    assert item.pairs() == [(1, 0), (0, 3), (1, 2), (1, 3), (2, 3)]
    with pytest.raises(ValueError, match="3 ranks for 2 completions"):
        RankedItem(prompt="p", completions=["a", "b"], ranks=[1, 2, 3])
    with pytest.raises(ValueError, match="at least 2 completions"):
        RankedItem(prompt="p", completions=["a"], ranks=[1])


def test_split_by_prompt_keeps_each_prompt_on_one_side():
    items = [RankedItem(prompt=f"p{i % 10}", completions=["a", "b"], ranks=[1, 2], prompt_id=i % 10, judgment_id=i)
             for i in range(40)]
    train, held_out = split_by_prompt(items, 0.2, seed=3)
    assert len(train) == 32 and len(held_out) == 8
    assert not {i.prompt_id for i in train} & {i.prompt_id for i in held_out}
    assert split_by_prompt(items, 0.2, seed=3) == (train, held_out)  # the seed fixes the split
    assert split_by_prompt(items, 0.0, seed=3) == (items, [])
    chat = [RankedItem(prompt=[{"role": "user", "content": c}], completions=["a", "b"], ranks=[1, 2]) for c in "xxy"]
    train, held_out = split_by_prompt(chat, 0.01, seed=0)  # no ids: the content decides; one prompt held out
    assert len(held_out) in (1, 2) and {i.prompt[0]["content"] for i in held_out} in ({"x"}, {"y"})
