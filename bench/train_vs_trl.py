"""Preflab's DPO and reward-model trainers against TRL's DPOTrainer and RewardTrainer on the same data.

The default policy (SmolLM2-135M-Instruct, converted once from its GGUF to a folder both load) samples
K=4 completions for 8 prompts once (cached under --workdir); the shorter completion wins, so each
judgment gives C(4,2) = 6 pairs, 48 in all. Each trainer runs in its own subprocess, one after the
other, with a fresh HF_HOME, the same model, optimizer steps, lr and max length, fp32, no gradient
checkpointing. Prints one JSON line: end-to-end wall clock (load, reference pass, train, save), pairs/s,
peak RSS, step-0 loss, the ratios, and the largest difference between Preflab's and TRL's
per-sequence log-probs of the initial model.
"""

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "Write a haiku about autumn leaves.",
    "What is the capital of Australia?",
    "Give me three ideas for a rainy afternoon.",
    "Explain photosynthesis to a child.",
    "Rewrite this sentence more politely: give me the report now.",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "Is a tomato a fruit or a vegetable?",
    "Suggest a name for a friendly robot.",
]
K = 4


def _samples(workdir: Path) -> list[dict]:
    """8 prompts x K completions from the default policy, sampled once and cached."""
    path = workdir / "samples.json"
    if path.exists():
        return json.loads(path.read_text())
    from app.config import Settings
    from app.models.bundled import default_policy_path
    from app.policy.base import PromptSpec, SamplingParams
    from app.policy.transformers_backend import load_policy

    policy = load_policy(str(default_policy_path(Settings().policy_dir)), device="cpu")
    out = policy.sample([PromptSpec(text=p) for p in PROMPTS],
                        SamplingParams(n=K, temperature=0.9, top_p=0.95, max_new_tokens=64, seed=0))
    rows = [{"prompt": p, "completions": [s.text for s in samples]} for p, samples in zip(PROMPTS, out)]
    path.write_text(json.dumps(rows))
    return rows


def _model_folder(workdir: Path) -> Path:
    """The default policy as a Hugging Face folder, so both trainers load the same weights the same way."""
    folder = workdir / "smollm2-135m"
    if (folder / "config.json").exists():
        return folder
    from app.config import Settings
    from app.models.bundled import default_policy_path
    from app.training.common import load_causal_lm, load_tokenizer, save_model

    gguf = str(default_policy_path(Settings().policy_dir))
    save_model(load_causal_lm(gguf), load_tokenizer(gguf), folder)
    return folder


def _items(rows: list[dict]):
    from app.training.items import RankedItem

    items = []
    for i, row in enumerate(rows):
        order = sorted(range(K), key=lambda j: (len(row["completions"][j]), j))  # shorter wins, no ties
        ranks = [order.index(j) + 1 for j in range(K)]
        items.append(RankedItem(prompt=[{"role": "user", "content": row["prompt"]}],
                                completions=row["completions"], ranks=ranks, prompt_id=i, judgment_id=i))
    return items


def _pair_rows(folder: Path, items) -> list[dict]:
    """TRL's rows: the prompt as the chat template renders it (plain text, so TRL appends EOS as we do)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = []
    for item in items:
        prompt = tokenizer.apply_chat_template(item.prompt, add_generation_prompt=True, tokenize=False)
        rows += [{"prompt": prompt, "chosen": item.completions[w], "rejected": item.completions[lo]}
                 for w, lo in item.pairs()]
    return rows


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(which: str, workdir: Path, args: argparse.Namespace) -> dict:
    """One trainer, in this (sub)process; returns its figures."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = _model_folder(workdir)
    items = _items(_samples(workdir))
    rows = _pair_rows(folder, items)
    out_dir = Path(tempfile.mkdtemp(prefix=f"{which}-", dir=workdir))
    steps_per_epoch = args.steps
    losses: list[float] = []
    start = time.perf_counter()
    if which == "preflab-dpo":
        from safetensors.torch import load_file

        from app.training.dpo import train_dpo
        from app.training.params import DPOParams

        params = DPOParams(lr=args.lr_dpo, beta=0.1, epochs=1, batch_judgments=len(items) // steps_per_epoch,
                           max_length=args.max_length, eval_fraction=0.0)
        result = train_dpo(base_path=str(folder), items=items, eval_items=[], out_dir=out_dir, params=params,
                           on_step=lambda s: losses.append(s["loss"]), device="cpu", ref_cache_dir=out_dir / "cache")
        seconds = time.perf_counter() - start
        flat = load_file(str(next((out_dir / "cache").glob("*.safetensors"))))["logps"].tolist()
        logps, pos = [], 0
        for item in items:  # per pair, in TRL's row order
            per = flat[pos:pos + K]
            pos += K
            logps += [[per[w], per[lo]] for w, lo in item.pairs()]
        extra = {"logps": logps, "truncated_completions": result["truncated_completions"]}
    elif which == "preflab-rm":
        from app.training.params import RewardParams
        from app.training.reward import train_reward_model

        params = RewardParams(lr=args.lr_rm, epochs=1, batch_judgments=len(items) // steps_per_epoch,
                              max_length=args.max_length, eval_fraction=0.0, center_coef=0.01)
        result = train_reward_model(base_path=str(folder), items=items, eval_items=[], out_dir=out_dir,
                                    params=params, on_step=lambda s: losses.append(s["loss"]), device="cpu")
        seconds = time.perf_counter() - start
        extra = {}
    else:
        extra, seconds = _run_trl(which, folder, rows, out_dir, args, losses, start)
    shutil.rmtree(out_dir)  # each run saves a 0.5 GB model; the timings already include writing it
    return {"seconds": seconds, "pairs": len(rows), "steps": len(losses), "losses": losses,
            "peak_rss_mb": _peak_rss_mb(), **extra}


def _run_trl(which: str, folder: Path, rows: list[dict], out_dir: Path, args: argparse.Namespace,
             losses: list[float], start: float) -> tuple[dict, float]:
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    class Losses(TrainerCallback):
        def on_log(self, _args, _state, _control, logs=None, **_kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    common = dict(output_dir=str(out_dir), per_device_train_batch_size=len(rows) // args.steps, num_train_epochs=1,
                  max_length=args.max_length, bf16=False, gradient_checkpointing=False, logging_steps=1,
                  report_to="none", save_strategy="no", seed=0, use_cpu=True, dataloader_pin_memory=False,
                  disable_tqdm=True, lr_scheduler_type="linear", warmup_steps=0)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dataset = Dataset.from_list(rows)
    extra: dict = {}
    if which in ("trl-dpo", "trl-logps"):
        from transformers import AutoModelForCausalLM
        from trl import DPOConfig, DPOTrainer

        model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32")
        config = DPOConfig(learning_rate=args.lr_dpo, beta=0.1, precompute_ref_log_probs=which == "trl-logps",
                           **common)
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             callbacks=[Losses()])
        if which == "trl-logps":  # the reference pass only: TRL's per-sequence log-probs of the initial model
            data = trainer.train_dataset
            return {"logps": [[c, r] for c, r in zip(data["ref_chosen_logps"], data["ref_rejected_logps"])]}, 0.0
    else:
        from transformers import AutoModelForSequenceClassification
        from trl import RewardConfig, RewardTrainer

        from app.training.reward import reward_pad_id

        pad = reward_pad_id(tokenizer)
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype="float32",
                                                                   pad_token_id=pad)
        config = RewardConfig(learning_rate=args.lr_rm, center_rewards_coefficient=0.01,
                              pad_token=tokenizer.convert_ids_to_tokens(pad), **common)
        trainer = RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                callbacks=[Losses()])
    train_start = time.perf_counter()
    trainer.train()
    extra["train_only_s"] = time.perf_counter() - train_start
    trainer.save_model(str(out_dir / "final"))
    return extra, time.perf_counter() - start


def _subprocess(which: str, workdir: Path, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="hf-home-") as hf_home:
        env = {**os.environ, "HF_HOME": hf_home, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "TQDM_DISABLE": "1"}
        cmd = [sys.executable, __file__, "--one", which, "--workdir", str(workdir), "--steps", str(args.steps),
               "--max-length", str(args.max_length), "--lr-dpo", str(args.lr_dpo), "--lr-rm", str(args.lr_rm),
               "--threads", str(args.threads)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{which} failed:\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "preflab-bench-trl")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps (one epoch)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lr-dpo", type=float, default=1e-6)
    parser.add_argument("--lr-rm", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every run (0: torch's default)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(run_one(args.one, args.workdir, args)))
        return

    _model_folder(args.workdir)
    _samples(args.workdir)
    runs = {which: _subprocess(which, args.workdir, args)
            for which in ("preflab-dpo", "trl-dpo", "preflab-rm", "trl-rm", "trl-logps")}

    def figures(run: dict) -> dict:
        return {"seconds": round(run["seconds"], 2), "pairs_per_s": round(run["pairs"] / run["seconds"], 3),
                "peak_rss_mb": round(run["peak_rss_mb"]), "steps": run["steps"],
                "step0_loss": round(run["losses"][0], 6), **({"train_only_s": round(run["train_only_s"], 2)}
                                                             if "train_only_s" in run else {})}

    out = {name: figures(runs[name]) for name in ("preflab-dpo", "trl-dpo", "preflab-rm", "trl-rm")}
    ours, theirs = runs["preflab-dpo"]["logps"], runs["trl-logps"]["logps"]
    import torch

    print(json.dumps({
        "bench": "train_vs_trl", "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "torch_threads": args.threads or torch.get_num_threads(), "pairs": runs["preflab-dpo"]["pairs"],
        "judgments": len(PROMPTS), "k": K, "steps": args.steps, "max_length": args.max_length,
        **out, "ln2": round(math.log(2), 6),
        "dpo_speedup": round(out["preflab-dpo"]["pairs_per_s"] / out["trl-dpo"]["pairs_per_s"], 2),
        "rm_speedup": round(out["preflab-rm"]["pairs_per_s"] / out["trl-rm"]["pairs_per_s"], 2),
        "dpo_rss_ratio": round(out["preflab-dpo"]["peak_rss_mb"] / out["trl-dpo"]["peak_rss_mb"], 2),
        "rm_rss_ratio": round(out["preflab-rm"]["peak_rss_mb"] / out["trl-rm"]["peak_rss_mb"], 2),
        "logps_max_abs_diff": max(abs(a - b) for p, q in zip(ours, theirs) for a, b in zip(p, q)),
        "truncated_completions": runs["preflab-dpo"]["truncated_completions"],
    }))


if __name__ == "__main__":
    main()
