"""The training loops data-parallel: two CPU processes (gloo) as `accelerate launch` would start them."""

import json
import socket
import subprocess
import sys
from pathlib import Path


def test_two_processes_share_the_judgments_and_the_main_one_reports_and_saves(tiny_model_dir, tmp_path):
    root = Path(__file__).resolve().parents[2]
    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port),
         "-m", "tests.training.ddp_script", str(tiny_model_dir), str(tmp_path)],
        cwd=root, capture_output=True, text=True, timeout=240,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                   key=lambda r: r["rank"])
    # 12 training judgments, 6 per process, 2 a step: 3 steps each, in step.
    assert [(r["rank"], r["world"], r["dpo_steps"], r["rm_steps"]) for r in ranks] == [(0, 2, 3, 3), (1, 2, 3, 3)]
    assert ranks[0]["on_step_calls"] == 3 + 1 + 3 + 1 and ranks[1]["on_step_calls"] == 0  # steps + one evaluation
    assert ranks[0]["dpo_eval"] and ranks[0]["rm_eval"] and not ranks[1]["dpo_eval"]
    assert (tmp_path / "dpo" / "model.safetensors").exists() and (tmp_path / "rm" / "model.safetensors").exists()
