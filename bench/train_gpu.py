"""Preflab's DPO and reward-model trainers on a CUDA GPU with bf16 autocast, in pairs per second.

The model is SmolLM2-135M-Instruct's architecture and tokenizer with RANDOM weights (the bundled GGUF
is too large to carry to a GPU machine; the cost of a step does not depend on the weights' values).
The data are completions the real default policy sampled on the CPU beforehand (--make-samples): the
train_vs_trl prompts (8 x K=4, 48 pairs) and a larger set (64 x K=4, 384 pairs), the shorter completion
preferred. Each trainer runs end to end in this process (load from disk, tokenise, reference pass or
centring pass, train, save) after one warm-up run, so CUDA's start-up is not counted; `train_pairs_per_s`
is the pairs of steps 2..N over the time from the end of step 1 to the end of step N. Every step is one
forward batch of prompts / --steps judgments; `--sets 64 --steps 1 --epochs 4` trains 64 per forward.

    python bench/train_gpu.py --make-samples samples.json              # here, on the CPU, once
    python bench/train_gpu.py --samples samples.json --model-dir DIR   # on the GPU machine

DIR holds SmolLM2's config.json and tokenizer (save_pretrained of both). Prints one JSON line.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_vs_trl import PROMPTS, K, _items

TASKS = ["Write a short poem about", "Explain to a child what happens to", "Give three facts about",
         "Describe the colour and smell of", "Tell a one-line joke about", "What is the history of",
         "Summarize in one sentence why people like"]
SUBJECTS = ["the ocean", "bread", "a thunderstorm", "the moon", "bicycles", "honey", "snow", "old libraries"]


def prompts(n: int) -> list[str]:
    """The benchmark's 8 prompts first, then task x subject combinations."""
    extra = [f"{task} {subject}." for task in TASKS for subject in SUBJECTS]
    return (PROMPTS + extra)[:n]


def make_samples(path: Path, n: int) -> None:
    """n prompts x K completions from the default policy (CPU), as train_vs_trl samples them."""
    from app.config import Settings
    from app.models.bundled import default_policy_path
    from app.policy.base import PromptSpec, SamplingParams
    from app.policy.transformers_backend import load_policy

    policy = load_policy(str(default_policy_path(Settings().policy_dir)), device="cpu")
    texts = prompts(n)
    out = policy.sample([PromptSpec(text=p) for p in texts],
                        SamplingParams(n=K, temperature=0.9, top_p=0.95, max_new_tokens=64, seed=0))
    rows = [{"prompt": p, "completions": [s.text for s in samples]} for p, samples in zip(texts, out)]
    path.write_text(json.dumps(rows))


def random_model(model_dir: Path, out: Path) -> Path:
    """SmolLM2's architecture with weights drawn from seed 0, saved (float32) with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def run(which: str, base: Path, items: list, steps: int, max_length: int, device: str, workdir: Path,
        epochs: int = 1) -> dict:
    import torch

    from app.training.dpo import train_dpo
    from app.training.params import DPOParams, RewardParams
    from app.training.reward import train_reward_model

    stamps: list[tuple[float, dict]] = []
    per_step = max(1, len(items) // steps)
    out_dir = Path(tempfile.mkdtemp(prefix=f"{which}-", dir=workdir))
    on_cuda = device.startswith("cuda")
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if which == "dpo":
        result = train_dpo(base_path=str(base), items=items, eval_items=[], out_dir=out_dir, device=device,
                           params=DPOParams(lr=1e-6, beta=0.1, batch_judgments=per_step, max_length=max_length,
                                            eval_fraction=0.0, epochs=epochs),
                           on_step=lambda s: stamps.append((time.perf_counter(), s)))
    else:
        result = train_reward_model(base_path=str(base), items=items, eval_items=[], out_dir=out_dir, device=device,
                                    params=RewardParams(lr=1e-5, batch_judgments=per_step, max_length=max_length,
                                                        eval_fraction=0.0, epochs=epochs),
                                    on_step=lambda s: stamps.append((time.perf_counter(), s)))
    seconds = time.perf_counter() - start
    later = sum(s["pairs"] for _, s in stamps[1:])
    return {"seconds": seconds, "pairs": result["pairs"], "steps": result["steps"],
            "train_pairs_per_s": later / (stamps[-1][0] - stamps[0][0]) if len(stamps) > 1 else None,
            "step0_loss": stamps[0][1]["loss"], "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if on_cuda else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make-samples", type=Path, help="write 64 prompts x K samples here and stop")
    parser.add_argument("--samples", type=Path)
    parser.add_argument("--model-dir", type=Path, help="SmolLM2's config.json and tokenizer")
    parser.add_argument("--sets", default="8,64", help="prompt counts to train on (each x K=4 completions)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per epoch (one forward batch each)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.make_samples:
        make_samples(args.make_samples, 64)
        return

    import torch

    rows = json.loads(args.samples.read_text())
    with tempfile.TemporaryDirectory(prefix="train-gpu-") as tmp:
        workdir = Path(tmp)
        base = random_model(args.model_dir, workdir / "smollm2-135m-random")
        run("dpo", base, _items(rows[:8]), 1, args.max_length, args.device, workdir)  # warm-up: CUDA start-up
        figures = {}
        for n in (int(x) for x in args.sets.split(",")):
            items = _items(rows[:n])
            for which in ("dpo", "rm"):
                runs = [run(which, base, items, args.steps, args.max_length, args.device, workdir, args.epochs)
                        for _ in range(args.repeats)]
                seconds = statistics.median(r["seconds"] for r in runs)
                train_rates = [r["train_pairs_per_s"] for r in runs if r["train_pairs_per_s"]]
                figures[f"{which}-{n}x{K}"] = {
                    "pairs": runs[0]["pairs"], "judgments_per_forward": len(items) // args.steps,
                    "epochs": args.epochs, "steps": runs[0]["steps"], "seconds_median": round(seconds, 3),
                    "seconds": [round(r["seconds"], 3) for r in runs],
                    "pairs_per_s": round(runs[0]["pairs"] * args.epochs / seconds, 1),
                    "train_pairs_per_s": round(statistics.median(train_rates), 1) if train_rates else None,
                    "step0_loss": round(runs[0]["step0_loss"], 6),
                    "peak_gpu_mb": round(max(r["peak_gpu_mb"] for r in runs))}
    print(json.dumps({"bench": "train_gpu", "device": torch.cuda.get_device_name() if args.device == "cuda" else
                      args.device, "torch": torch.__version__, "weights": "random, SmolLM2-135M config",
                      "precision": "bf16 autocast, float32 weights" if args.device == "cuda" else "float32", "k": K, "max_length": args.max_length,
                      **figures}))


if __name__ == "__main__":
    main()
