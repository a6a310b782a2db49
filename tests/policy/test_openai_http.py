"""The OpenAI-compatible backend against a real HTTP server on loopback."""

import socket
import time

import pytest

from app.policy.base import PolicyError, PromptSpec, SamplingParams
from app.policy.openai_backend import OpenAIPolicy
from tests.policy.fake_openai import FakeOpenAI


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def _policy(server, **kwargs) -> OpenAIPolicy:
    kwargs.setdefault("backoff", 0.01)
    return OpenAIPolicy(server.base_url, "tiny-llama", **kwargs)


PROMPTS = [PromptSpec(text="first?"), PromptSpec(text="", messages=[{"role": "system", "content": "terse"},
                                                                  {"role": "user", "content": "second?"}])]
PARAMS = SamplingParams(n=3, temperature=0.9, top_p=0.8, max_new_tokens=16, seed=5)


def test_n_samples_per_prompt_in_order(server):
    with _policy(server, api_key="sk-test") as policy:
        out = policy.sample(PROMPTS, PARAMS)
    assert [len(row) for row in out] == [3, 3]
    assert all(s.text.endswith("to: first?") for s in out[0]) and all(s.text.endswith("to: second?") for s in out[1])
    assert [s.text.split(" ")[1].split(".")[1] for s in out[0]] == ["0", "1", "2"]  # sorted by choice index
    assert [s.finish_reason for s in out[0]] == ["stop", "length", "stop"]
    assert {s.token_count for row in out for s in row} == {6} and out[0][0].extra["token_count_estimated"]
    bodies = sorted(server.behaviour.requests, key=lambda b: b["messages"][-1]["content"])
    assert bodies[0] == {"model": "tiny-llama", "messages": [{"role": "user", "content": "first?"}], "n": 3,
                         "temperature": 0.9, "top_p": 0.8, "max_tokens": 16, "seed": 5}
    assert bodies[1]["messages"][0] == {"role": "system", "content": "terse"}
    assert {h["authorization"] for h in server.behaviour.headers} == {"Bearer sk-test"}


def test_server_errors_are_retried(server):
    server.behaviour.fail_first = 2
    with _policy(server) as policy:
        out = policy.sample(PROMPTS[:1], PARAMS)
    assert len(out[0]) == 3 and len(server.behaviour.requests) == 3


def test_auth_error_is_clear_not_retried_and_keeps_the_key_secret(server):
    server.behaviour.status = 401
    with _policy(server, api_key="sk-secret-value") as policy, pytest.raises(PolicyError) as err:
        policy.sample(PROMPTS[:1], PARAMS)
    assert "answered 401: invalid api key" in str(err.value) and server.base_url in str(err.value)
    assert "sk-secret-value" not in str(err.value)
    assert len(server.behaviour.requests) == 1


def test_malformed_answer(server):
    server.behaviour.malformed = True
    with _policy(server) as policy, pytest.raises(PolicyError, match="not JSON"):
        policy.sample(PROMPTS[:1], PARAMS)


def test_server_ignoring_n_is_asked_again(server):
    server.behaviour.ignore_n = True
    with _policy(server) as policy:
        out = policy.sample(PROMPTS[:1], PARAMS)
    assert len(out[0]) == 3 and len(server.behaviour.requests) == 3
    assert [b["seed"] for b in server.behaviour.requests] == [5, 6, 7]
    assert out[0][0].token_count == 6 and "token_count_estimated" not in out[0][0].extra


def test_timeout_gives_up_after_retries(server):
    server.behaviour.delay = 1.0
    started = time.monotonic()
    with _policy(server, timeout=0.2, max_retries=1) as policy, pytest.raises(PolicyError, match="after 2 tries: timed out"):
        policy.sample(PROMPTS[:1], PARAMS)
    assert time.monotonic() - started < 5


def test_connection_refused_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = OpenAIPolicy(f"http://127.0.0.1:{port}", "m", max_retries=1, backoff=0.01)
    with pytest.raises(PolicyError) as err:
        policy.sample(PROMPTS[:1], PARAMS)
    assert f"http://127.0.0.1:{port}/v1" in str(err.value) and "could not connect" in str(err.value)
