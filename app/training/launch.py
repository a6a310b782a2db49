"""Train from a rankings export outside the job queue, on one or many GPUs:

    accelerate launch -m app.training.launch dpo --base MODEL --data rankings.jsonl --out DIR [--params JSON]
    python -m app.training.launch reward --base MODEL --data rankings.jsonl --out DIR     # one process

`--data` is what `preflab export PROJECT --format rankings` writes (one judgment per line). The
trainers wrap their loops in accelerate's Accelerator, so the same command runs single-process, with
DDP over the GPUs `accelerate launch` starts, or over several nodes. The main process prints the final
figures as one JSON line; the folder in --out loads with transformers and can be registered as a policy
(`POST /api/v1/models`).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.training.items import RankedItem, TrainingError, split_by_prompt
from app.training.jobs import ranked_items
from app.training.params import DPOParams, RewardParams

KINDS = {"reward": RewardParams, "dpo": DPOParams}


def read_rankings(path: Path) -> list[RankedItem]:
    with path.open(encoding="utf-8") as f:
        return ranked_items(json.loads(line) for line in f if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.training.launch", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS), help="reward: a reward model; dpo: a DPO policy")
    parser.add_argument("--base", required=True, help="the model to start from: a HF folder or a .gguf file")
    parser.add_argument("--data", required=True, type=Path, help="a rankings export (JSONL)")
    parser.add_argument("--out", required=True, type=Path, help="the folder the trained model is saved to")
    parser.add_argument("--params", default="{}", help='trainer parameters as JSON, e.g. \'{"lr": 1e-6, "epochs": 2}\'')
    parser.add_argument("--ref-cache", type=Path, default=None, help="dpo: where reference log-probs are cached")
    args = parser.parse_args(argv)
    try:
        params = KINDS[args.kind].model_validate(json.loads(args.params))
    except (ValueError, ValidationError) as exc:
        parser.error(f"--params: {exc}")
    if not args.data.is_file():
        parser.error(f"--data: {args.data} is not a file")
    items = read_rankings(args.data)
    train, held_out = split_by_prompt(items, params.eval_fraction, params.seed)
    common: dict[str, Any] = {"base_path": args.base, "items": train, "eval_items": held_out, "out_dir": args.out,
                              "params": params}
    try:
        if args.kind == "reward":
            from app.training.reward import train_reward_model

            metrics = train_reward_model(**common)
        else:
            from app.training.dpo import train_dpo

            metrics = train_dpo(**common, ref_cache_dir=args.ref_cache, cache_key=str(args.data.resolve()))
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps({"kind": args.kind, "out": str(args.out), "train_judgments": len(train),
                          "eval_judgments": len(held_out), **metrics}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
