"""Run by test_distributed.py under torch.distributed.run: both trainers in 2 CPU processes."""

import json
import sys
from pathlib import Path

from app.training.dpo import train_dpo
from app.training.items import split_by_prompt
from app.training.params import DPOParams, RewardParams
from app.training.reward import train_reward_model
from tests.training.test_trainers import shorter_wins


def main() -> None:
    import torch
    from accelerate import PartialState

    torch.set_num_threads(1)
    model, out = sys.argv[1], Path(sys.argv[2])
    state = PartialState(cpu=True)
    train, held_out = split_by_prompt(shorter_wins(16, seed=4), 0.25, 0)
    steps: list[dict] = []
    dpo = train_dpo(base_path=model, items=train, eval_items=held_out, out_dir=out / "dpo", device="cpu",
                    params=DPOParams(lr=1e-3, batch_judgments=2), on_step=steps.append)
    rm = train_reward_model(base_path=model, items=train, eval_items=held_out, out_dir=out / "rm", device="cpu",
                            params=RewardParams(lr=1e-3, batch_judgments=2), on_step=steps.append)
    print(json.dumps({"rank": state.process_index, "world": state.num_processes, "on_step_calls": len(steps),
                      "dpo_steps": dpo["steps"], "rm_steps": rm["steps"],
                      "dpo_eval": "eval/rewards/accuracies" in dpo, "rm_eval": "eval/accuracy" in rm}))


if __name__ == "__main__":
    main()
