"""`python -m app.training.launch`: the entry point `accelerate launch` runs, here as one process."""

import json
import subprocess
import sys

WORDS = ["sun", "sea", "tree", "stone", "river", "cloud"]


def _rankings_row(i: int) -> dict:
    """A row as `preflab export --format rankings` writes it (the fields the trainers read)."""
    texts = [" ".join(WORDS[:n]) for n in (1, 3, 6)]
    return {"judgment_id": 100 + i, "task_id": i, "prompt_id": i, "prompt": f"Say something ({i}).",
            "prompt_messages": [{"role": "user", "content": f"Say something ({i})."}],
            "completions": [{"completion_id": 10 * i + p, "text": t, "rank": p + 1} for p, t in enumerate(texts)]}


def _launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.training.launch", *args], capture_output=True, text=True,
                          timeout=300)


def test_launch_trains_a_reward_model_from_a_rankings_export(tiny_model_dir, tmp_path):
    data = tmp_path / "rankings.jsonl"
    data.write_text("".join(json.dumps(_rankings_row(i)) + "\n" for i in range(6)))
    out = tmp_path / "rm"
    params = {"max_steps": 2, "batch_judgments": 2, "max_length": 64, "eval_fraction": 0.34, "lr": 1e-3}
    done = _launch("reward", "--base", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                   "--params", json.dumps(params))
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert (figures["kind"], figures["train_judgments"], figures["eval_judgments"]) == ("reward", 4, 2)
    assert 0 <= figures["eval/accuracy"] <= 1

    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(out), use_safetensors=True)
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None

    bad = _launch("dpo", "--base", str(tiny_model_dir), "--data", str(data), "--out", str(tmp_path / "x"),
                  "--params", '{"beta": -1}')
    assert bad.returncode == 2 and "beta" in bad.stderr and not (tmp_path / "x").exists()
