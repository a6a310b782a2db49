"""bench/labeling_load.py end to end, briefly: `preflab serve` on PostgreSQL, labelers over HTTP, its integrity counts."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_load_benchmark_runs_and_finds_nothing_lost_or_duplicated():
    proc = subprocess.run([sys.executable, "bench/labeling_load.py", "--labelers", "6", "--seconds", "2",
                           "--tasks", "40", "--labels-per-task", "2", "--web-workers", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["bench"] == "labeling_load" and out["web_workers"] == 2 and out["labelers"] == 6
    assert out["judgments"] > 0 and out["errors"] == 0, out["first_errors"]
    assert out["lost"] == out["duplicated"] == out["over_collected"] == out["half_written"] == 0
    assert out["counter_mismatch"] == 0
    # 40 tasks x 2 labels: never more judgments than slots, and the latencies are real timings.
    assert out["judgments"] <= 80
    assert 0 < out["lease_ms"]["p50"] <= out["lease_ms"]["p95"]
    assert 0 < out["submit_ms"]["p50"] <= out["submit_ms"]["p95"]
    assert out["server_cpu_ms_per_judgment"] > 0
