"""Local sampling with Hugging Face transformers: a folder, a hub id or a GGUF file, on CUDA or CPU."""

import logging
import random
import threading
from pathlib import Path
from typing import Any

from app.policy.base import PolicyError, PromptSpec, Sample, SamplingParams

log = logging.getLogger("preflab.policy")

# The loaded model stays in the worker between jobs; one at a time keeps memory bounded.
_cache: dict[str, "TransformersPolicy"] = {}
_cache_lock = threading.Lock()


def load_policy(source: str, *, device: str | None = None, batch_prompts: int = 8) -> "TransformersPolicy":
    """The policy for a source, loaded once per worker (the previous one is dropped)."""
    with _cache_lock:
        key = f"{source}@{device or 'auto'}"
        if key not in _cache:
            _cache.clear()
            _cache[key] = TransformersPolicy(source, device=device, batch_prompts=batch_prompts)
        return _cache[key]


def _from_pretrained(cls: Any, source: str, *, weights: bool = False, **kwargs: Any) -> Any:
    path = Path(source).expanduser()
    if weights and path.suffix != ".gguf":
        # Weights only from safetensors: a pytorch_model.bin is a pickle, and unpickling runs code.
        kwargs["use_safetensors"] = True
    if path.suffix == ".gguf":
        if not path.is_file():
            raise PolicyError(f"GGUF file {path} does not exist; run `preflab fetch-policy` for the default policy")
        return cls.from_pretrained(str(path.parent), gguf_file=path.name, **kwargs)
    if path.exists():
        if not (path / "config.json").exists():
            raise PolicyError(f"{path} is not a Hugging Face model folder (it has no config.json)")
        return cls.from_pretrained(str(path), **kwargs)
    if source.startswith(("/", ".", "~")):
        raise PolicyError(f"model path {source} does not exist")
    return cls.from_pretrained(source, **kwargs)  # a hub id, for workers with internet access


def render_prompt(tokenizer: Any, prompt: PromptSpec) -> str:
    """The prompt as the model reads it: through the chat template when the tokenizer has one."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(prompt.as_messages(), add_generation_prompt=True, tokenize=False)
    if prompt.messages:
        return "\n".join(f"{m['role']}: {m['content']}" for m in prompt.messages) + "\nassistant:"
    return prompt.text


class TransformersPolicy:
    def __init__(self, source: str, *, device: str | None = None, batch_prompts: int = 8) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.source = source
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.tokenizer = _from_pretrained(AutoTokenizer, source)
            self.model = _from_pretrained(AutoModelForCausalLM, source, weights=True, dtype=dtype)
        except PolicyError:
            raise
        except (OSError, ValueError) as exc:
            raise PolicyError(f"could not load the policy from {source!r}: {exc}") from exc
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        self.batch_prompts = batch_prompts
        log.info("loaded policy %s on %s (%s)", source, self.device, dtype)

    def render(self, prompt: PromptSpec) -> str:
        return render_prompt(self.tokenizer, prompt)

    def sample(self, prompts: list[PromptSpec], params: SamplingParams) -> list[list[Sample]]:
        results: list[list[Sample]] = []
        for start in range(0, len(prompts), self.batch_prompts):
            results.extend(self._sample_batch(prompts[start:start + self.batch_prompts], params))
        return results

    def _sample_batch(self, prompts: list[PromptSpec], params: SamplingParams) -> list[list[Sample]]:
        torch = self.torch
        texts = [self.render(p) for p in prompts]
        # The chat template already holds any BOS the model wants.
        enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                             add_special_tokens=not self.tokenizer.chat_template).to(self.device)
        seed = params.seed if params.seed is not None else random.randrange(2**31)
        torch.manual_seed(seed)
        greedy = params.temperature <= 0
        with torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=params.max_new_tokens, num_return_sequences=params.n, do_sample=not greedy,
                temperature=None if greedy else params.temperature, top_p=None if greedy else params.top_p,
                top_k=None, pad_token_id=self.tokenizer.pad_token_id,
            )
        generated = out[:, enc["input_ids"].shape[1]:].tolist()
        samples = []
        for row in generated:
            end = next((i for i, tok in enumerate(row) if tok in self.eos_ids), None)
            tokens = row if end is None else row[:end]
            samples.append(Sample(
                text=self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                token_count=len(tokens), finish_reason="length" if end is None else "stop",
                extra={"seed": seed},
            ))
        return [samples[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]
