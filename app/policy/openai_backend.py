"""Sampling from an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp server) over HTTP."""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from app.policy.base import PolicyError, PolicyUnavailable, PromptSpec, Sample, SamplingParams

STOP_REASONS = {"stop": "stop", "eos": "stop", "end_turn": "stop", "length": "length", "max_tokens": "length"}
MAX_PARALLEL = 8
MAX_BACKOFF = 30.0


class OpenAIPolicy:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 120.0,
                 max_retries: int = 4, backoff: float = 1.0) -> None:
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "OpenAIPolicy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sample(self, prompts: list[PromptSpec], params: SamplingParams) -> list[list[Sample]]:
        """params.n samples per prompt; prompts are asked for concurrently, answers kept in order."""
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, max(len(prompts), 1))) as pool:
            return list(pool.map(lambda p: self._sample_one(p, params), prompts))

    def _sample_one(self, prompt: PromptSpec, params: SamplingParams) -> list[Sample]:
        samples: list[Sample] = []
        asks = 0
        while len(samples) < params.n:
            missing = params.n - len(samples)
            seed = None if params.seed is None else params.seed + asks
            samples.extend(self._ask(prompt, params, missing, seed))
            asks += 1
            if asks > params.n:  # each ask returns at least one choice, so this only guards a broken server
                raise PolicyError(f"{self._where()} kept returning too few choices for n={params.n}")
        return samples[:params.n]

    def _where(self) -> str:
        return f"OpenAI-compatible server at {self.base_url}"

    def _ask(self, prompt: PromptSpec, params: SamplingParams, n: int, seed: int | None) -> list[Sample]:
        body: dict[str, Any] = {"model": self.model, "messages": prompt.as_messages(), "n": n,
                                "temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": params.max_new_tokens}
        if seed is not None:
            body["seed"] = seed
        data = self._post(body)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise PolicyError(f"{self._where()} answered 200 but the body is not an OpenAI chat completion: "
                              "missing 'choices'")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        completion_tokens = usage.get("completion_tokens")
        samples = []
        for choice in sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                raise PolicyError(f"{self._where()} answered a choice without a message")
            text = message.get("content") or ""
            reason = choice.get("finish_reason") or "stop"
            extra: dict[str, Any] = {} if reason in STOP_REASONS else {"finish_reason": reason}
            if isinstance(completion_tokens, int) and len(choices) == 1:
                tokens = completion_tokens
            elif isinstance(completion_tokens, int):
                # The server reports tokens for all choices together.
                tokens, extra["token_count_estimated"] = completion_tokens // len(choices), True
            else:
                tokens, extra["token_count_estimated"] = len(text.split()), True
            if seed is not None:
                extra["seed"] = seed
            samples.append(Sample(text=text.strip(), token_count=tokens,
                                  finish_reason=STOP_REASONS.get(reason, "stop"), extra=extra))
        return samples

    def _post(self, body: dict[str, Any]) -> Any:
        delay, last = self.backoff, ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.TransportError as exc:
                last = f"could not connect ({type(exc).__name__}: {exc})"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"answered {response.status_code}: {_server_message(response)}"
                retry_after = response.headers.get("retry-after", "")
                if retry_after.isdecimal():
                    delay = min(float(retry_after), MAX_BACKOFF)
                continue
            if response.status_code >= 400:
                raise PolicyError(f"{self._where()} answered {response.status_code}: {_server_message(response)}")
            try:
                return response.json()
            except ValueError:
                raise PolicyError(f"{self._where()} answered 200 but the body is not JSON") from None
        raise PolicyUnavailable(f"{self._where()} failed after {self.max_retries + 1} tries: {last}")


def _server_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:500]
    if isinstance(error, str):
        return error[:500]
    return response.text[:200] or response.reason_phrase
