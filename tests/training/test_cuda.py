"""The trainers on a CUDA GPU with bf16 autocast (skipped without one, as on CI).

Runs without the suite's conftest, which imports the web app: on a GPU machine that has torch,
transformers and accelerate, plus pydantic and pydantic-settings,

    python3 -m pytest --noconftest -p no:cacheprovider tests/training/test_cuda.py

The tiny models use SmolLM2's tokenizer: read from the bundled GGUF, or, where that file is absent,
from the tokenizer folder named by PREFLAB_TEST_TOKENIZER_DIR (what save_pretrained writes).
"""

import math
import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DEVICE = "cuda"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path | None:
    folder = os.environ.get("PREFLAB_TEST_TOKENIZER_DIR")
    return Path(folder) if folder else None


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer_dir) -> Path:
    from tests.policy.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), tokenizer_dir=tokenizer_dir)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def test_reward_model_learns_on_cuda_and_its_folder_scores_alike(tiny_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from app.training.items import split_by_prompt
    from app.training.params import RewardParams
    from app.training.reward import train_reward_model
    from app.training.score import score_completions
    from tests.training.test_trainers import shorter_wins, transformers_scores

    train, held_out = split_by_prompt(shorter_wins(80), eval_fraction=0.25, seed=0)
    steps = []
    result = train_reward_model(base_path=str(tiny_dir), items=train, eval_items=held_out, out_dir=tmp_path / "rm",
                                params=RewardParams(lr=3e-3, epochs=3, batch_judgments=4), on_step=steps.append,
                                device=DEVICE)
    print(result)
    assert result["eval/accuracy"] >= 0.9
    assert result["judgments"] == 60 and result["pairs"] == 180 and result["eval_pairs"] == 60
    assert [s["step"] for s in steps if "loss" in s] == list(range(1, 46))
    assert all(math.isfinite(s["loss"]) for s in steps if "loss" in s)

    prompts = [item.prompt for item in held_out[:3]]
    completions = [list(item.completions) for item in held_out[:3]]
    on_cpu = score_completions(reward_path=str(tmp_path / "rm"), prompts=prompts, completions=completions,
                               device="cpu")
    on_gpu = score_completions(reward_path=str(tmp_path / "rm"), prompts=prompts, completions=completions,
                               device=DEVICE)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", use_safetensors=True).eval()
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # saved from float32 weights
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "rm")
    offset = model.config.reward_mean
    assert offset == pytest.approx(result["reward_mean"])
    spread = max(abs(s) for row in on_cpu for s in row)
    for prompt, texts, cpu_row, gpu_row in zip(prompts, completions, on_cpu, on_gpu):
        raw = transformers_scores(model, tokenizer, prompt, texts)
        assert cpu_row == pytest.approx([r - offset for r in raw], abs=1e-4)
        # The GPU scorer runs the weights in bfloat16: close to float32, not equal.
        assert gpu_row == pytest.approx(cpu_row, abs=0.02 * spread + 1e-3)
        assert sorted(range(len(texts)), key=gpu_row.__getitem__) == sorted(range(len(texts)),
                                                                            key=cpu_row.__getitem__)


def test_dpo_learns_on_cuda_from_ln2_and_saves_a_causal_lm(tiny_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from app.training.dpo import train_dpo
    from app.training.items import split_by_prompt
    from app.training.params import DPOParams
    from tests.training.test_trainers import shorter_wins

    train, held_out = split_by_prompt(shorter_wins(80, seed=1), eval_fraction=0.25, seed=0)
    steps = []
    result = train_dpo(base_path=str(tiny_dir), items=train, eval_items=held_out, out_dir=tmp_path / "dpo",
                       params=DPOParams(lr=2e-3, beta=0.1, epochs=2, batch_judgments=4), on_step=steps.append,
                       ref_cache_dir=tmp_path / "cache", cache_key="snapshot-1", device=DEVICE)
    print(result, steps[0])
    # The reference pass and step 0 compute the same bf16 forward, so the first loss is ln 2.
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert steps[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert result["eval/rewards/accuracies"] >= 0.8
    [cached] = (tmp_path / "cache").glob("*.safetensors")
    refs = load_file(cached)["logps"]
    assert refs.dtype == torch.float32 and refs.device.type == "cpu" and bool((refs < 0).all())

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo", use_safetensors=True)
    initial = AutoModelForCausalLM.from_pretrained(tiny_dir, use_safetensors=True)
    assert {p.dtype for p in saved.parameters()} == {torch.float32}
    moved = [name for name, p in initial.named_parameters() if not torch.equal(p, saved.get_parameter(name))]
    assert len(moved) == len(list(initial.parameters()))  # every weight trained


def test_grouped_losses_equal_pair_by_pair_on_cuda_in_float32(tiny_dir, tmp_path):
    from app.training.common import (CompletionLogps, CompletionRewards, encode_items, load_causal_lm,
                                     load_reward_model, load_tokenizer)
    from app.training.reward import reward_pad_id
    from tests.policy.models import build_tiny_model
    from tests.training.test_losses import (grouped_dpo_loss, grouped_reward_loss, pairwise_dpo_loss,
                                            pairwise_reward_loss, ranked_items)

    tokenizer = load_tokenizer(str(tiny_dir))
    encoded, stats = encode_items(tokenizer, ranked_items(), max_length=60)
    assert stats.truncated_completions > 0
    pad = tokenizer.pad_token_id
    ref_model = load_causal_lm(str(build_tiny_model(tmp_path / "ref", tokenizer_dir=tiny_dir, seed=1)))
    ref_model = ref_model.to(DEVICE).eval()
    grouped = CompletionLogps(load_causal_lm(str(tiny_dir))).to(DEVICE)
    pairwise = load_causal_lm(str(tiny_dir)).to(DEVICE)
    grouped_loss = grouped_dpo_loss(grouped, ref_model, encoded, pad, 0.3, DEVICE)
    grouped_loss.backward()
    pairwise_loss = pairwise_dpo_loss(pairwise, ref_model, encoded, pad, 0.3, DEVICE)
    pairwise_loss.backward()
    assert grouped_loss.item() == pytest.approx(pairwise_loss.item(), abs=1e-5)
    assert abs(grouped_loss.item() - math.log(2)) > 1e-3
    grads = dict(grouped.model.named_parameters())
    for name, param in pairwise.named_parameters():
        assert torch.allclose(grads[name].grad, param.grad, atol=1e-5, rtol=1e-4), name

    rpad = reward_pad_id(tokenizer)
    grouped_rm = CompletionRewards(load_reward_model(str(tiny_dir), rpad)).to(DEVICE)
    pairwise_rm = load_reward_model(str(tiny_dir), rpad).to(DEVICE)
    assert grouped_reward_loss(grouped_rm, encoded, rpad, 0.05, DEVICE).item() == pytest.approx(
        pairwise_reward_loss(pairwise_rm, encoded, rpad, 0.05, DEVICE).item(), abs=1e-5)


def test_autocast_computes_in_bf16_while_weights_grads_and_optimizer_stay_float32(tiny_dir):
    from app.training.common import (
        CompletionRewards,
        encode_items,
        load_reward_model,
        load_tokenizer,
        make_accelerator,
        make_optimizer,
        pad_batch,
    )
    from app.training.reward import reward_pad_id
    from tests.training.test_losses import ranked_items

    tokenizer = load_tokenizer(str(tiny_dir))
    pad = reward_pad_id(tokenizer)
    [enc, *_] = encode_items(tokenizer, ranked_items(), max_length=60)[0]
    accelerator = make_accelerator(DEVICE)
    assert accelerator.mixed_precision == "bf16" and accelerator.device.type == "cuda"
    module = CompletionRewards(load_reward_model(str(tiny_dir), pad)).to(accelerator.device)
    optimizer = make_optimizer(list(module.parameters()), lr=1e-3, weight_decay=0.0)
    assert optimizer.defaults["fused"] is True  # the fused CUDA AdamW
    module, optimizer = accelerator.prepare(module, optimizer)
    seen = {}

    def record(_module, _inputs, output):  # a forward hook that returns None leaves the output alone
        seen["down_proj"] = output.dtype

    hook = module.model.model.layers[0].mlp.down_proj.register_forward_hook(record)
    with accelerator.autocast():
        rewards = module(*pad_batch([enc], pad, accelerator.device).inputs)
    hook.remove()
    assert seen["down_proj"] == torch.bfloat16 and rewards.dtype == torch.float32
    accelerator.backward(rewards.square().mean())
    before = module.model.score.weight.detach().clone()
    optimizer.step()
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in module.parameters() if p.grad is not None} == {torch.float32}
    assert {s["exp_avg"].dtype for s in optimizer.state.values()} == {torch.float32}
    assert not torch.equal(before, module.model.score.weight)
