"""Sampling from an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp server) over HTTP."""

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, Self

import httpx

from app.policy.base import PolicyError, PolicyUnavailable, PromptSpec, Sample, SamplingParams

# Servers disagree on the words; labelers and exports only need "the model ended" vs "it was cut off".
FINISH_REASONS = {"stop": "stop", "eos": "stop", "end_turn": "stop", "length": "length", "max_tokens": "length"}
MAX_PARALLEL = 8
MAX_BACKOFF = 30.0


class OpenAIPolicy:
    """A policy served by anything that speaks OpenAI's chat completions API."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 120.0,
                 max_retries: int = 4, backoff: float = 1.0) -> None:
        base = base_url.strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise PolicyError(f"the policy's base_url {base_url!r} must start with http:// or https://")
        # People paste "http://host:8000", ".../v1" and the full endpoint; requests always go under /v1.
        base = base.removesuffix("/chat/completions")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self._api_key = api_key or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)

    def __repr__(self) -> str:
        return f"OpenAIPolicy({self.base_url!r}, model={self.model!r})"  # never the key

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sample(self, prompts: list[PromptSpec], params: SamplingParams) -> list[list[Sample]]:
        """params.n samples per prompt; prompts are asked for concurrently, answers kept in prompt order."""
        if params.n < 1:
            raise PolicyError(f"asked for n={params.n} samples per prompt; n must be at least 1")
        if not prompts:
            return []
        pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(prompts)), thread_name_prefix="openai-policy")
        try:
            futures = [pool.submit(self._sample_one, prompt, params) for prompt in prompts]
            return [future.result() for future in futures]
        finally:
            # One failed prompt fails the batch, so prompts not yet sent are not worth the server's time.
            pool.shutdown(wait=True, cancel_futures=True)

    def _sample_one(self, prompt: PromptSpec, params: SamplingParams) -> list[Sample]:
        samples: list[Sample] = []
        # Some servers (llama.cpp, older TGI) ignore `n` and answer one choice: ask again for what is
        # missing, with the next seed so the extra draws differ. Every answer carries at least one
        # choice (_ask checks), so n asks always suffice.
        for ask in range(params.n):
            missing = params.n - len(samples)
            if missing <= 0:
                break
            seed = None if params.seed is None else params.seed + ask
            samples.extend(self._ask(prompt, params, missing, seed))
        return samples[:params.n]

    def _ask(self, prompt: PromptSpec, params: SamplingParams, n: int, seed: int | None) -> list[Sample]:
        body: dict[str, Any] = {"model": self.model, "messages": prompt.as_messages(), "n": n,
                                "temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": params.max_new_tokens}
        if seed is not None:
            body["seed"] = seed
        data = self._post(body)
        choices = self._choices(data)
        usage = data.get("usage")
        completion_tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if not isinstance(completion_tokens, int) or isinstance(completion_tokens, bool) or completion_tokens < 0:
            completion_tokens = None
        samples = []
        for choice in choices:
            content = choice["message"].get("content")
            text = (content or "").strip()
            reason = choice.get("finish_reason")
            extra: dict[str, Any] = {}
            if reason not in FINISH_REASONS:
                extra["finish_reason"] = reason
            if completion_tokens is not None and len(choices) == 1:
                tokens = completion_tokens
            elif completion_tokens is not None:
                # usage counts all choices together; an even split is the best the answer allows.
                tokens, extra["token_count_estimated"] = completion_tokens // len(choices), True
            else:
                tokens, extra["token_count_estimated"] = len(text.split()), True
            if seed is not None:
                extra["seed"] = seed
            samples.append(Sample(text=text, token_count=tokens, finish_reason=FINISH_REASONS.get(reason, "stop"),
                                  extra=extra))
        return samples

    def _choices(self, data: Any) -> list[dict[str, Any]]:
        """The answer's choices in index order, or PolicyError saying what is wrong with the body."""
        if not isinstance(data, dict) or "choices" not in data:
            self._not_a_completion("missing 'choices'")
        choices = data["choices"]
        if not isinstance(choices, list) or not choices:
            self._not_a_completion(f"'choices' is {choices!r:.80}, not a list with at least one choice")
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
                self._not_a_completion(f"choice {position} has no 'message'")
            content = choice["message"].get("content")
            if content is not None and not isinstance(content, str):
                self._not_a_completion(f"choice {position}'s message content is not text")
        order = [(c["index"] if isinstance(c.get("index"), int) else i, i) for i, c in enumerate(choices)]
        return [choices[i] for _, i in sorted(order)]

    def _post(self, body: dict[str, Any]) -> Any:
        tries = self.max_retries + 1
        delay, wait, last = self.backoff, 0.0, ""
        for attempt in range(tries):
            if attempt:
                time.sleep(wait)
                delay = min(delay * 2, MAX_BACKOFF)
            wait = min(delay, MAX_BACKOFF)
            try:
                response = self.client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = f"timed out (no answer within {self.timeout:g}s)"
                continue
            except httpx.ConnectError as exc:
                last = f"could not connect ({exc}); is the server running and listening at that address?"
                continue
            except httpx.TransportError as exc:
                last = f"the connection broke ({type(exc).__name__}: {exc})"
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                last = f"answered {status}: {_server_message(response)}"
                retry_after = _retry_after_seconds(response.headers.get("retry-after"))
                if retry_after is not None:
                    wait = retry_after
                continue
            if status != 200:
                hint = " (a redirect: check the base_url)" if 300 <= status < 400 else ""
                self._fail(f"{self._where()} answered {status}{hint}: {_server_message(response)}")
            try:
                return response.json()
            except ValueError:
                self._not_a_completion(f"not JSON ({response.text[:120]!r})")
        raise PolicyUnavailable(self._redact(f"{self._where()} failed after {tries} tries: {last}"))

    def _where(self) -> str:
        return f"OpenAI-compatible server at {self.base_url}"

    def _not_a_completion(self, why: str) -> NoReturn:
        self._fail(f"{self._where()} answered 200 but the body is not an OpenAI chat completion: {why}")

    def _fail(self, message: str) -> NoReturn:
        raise PolicyError(self._redact(message))

    def _redact(self, message: str) -> str:
        # A server may echo the key back in its error text; job errors are shown to admins.
        return message.replace(self._api_key, "[api key]") if self._api_key else message


def _retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header given in seconds, capped at MAX_BACKOFF; None when absent or an HTTP date."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_BACKOFF)


def _server_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI's {"error": {"message": ...}}, else the start of the body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:500]
    if isinstance(error, str):  # TGI and some proxies answer {"error": "..."}
        return error[:500]
    return response.text[:200].strip() or response.reason_phrase
