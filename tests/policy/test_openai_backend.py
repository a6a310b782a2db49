"""OpenAIPolicy against a real OpenAI-compatible HTTP server on loopback: answers, retries, failures."""

import re
import socket
import time

import pytest

from app.policy.base import PolicyError, PolicyUnavailable, PromptSpec, SamplingParams
from app.policy.openai_backend import OpenAIPolicy, _retry_after_seconds
from tests.policy.fake_openai import Behaviour, FakeOpenAI

KEY = "sk-test-0123456789"
PROMPTS = [
    PromptSpec(text="first?"),
    PromptSpec(text="ignored", messages=[{"role": "system", "content": "be terse"},
                                         {"role": "user", "content": "second?"}]),
    PromptSpec(text="third?"),
]
PARAMS = SamplingParams(n=3, temperature=0.9, top_p=0.8, max_new_tokens=16, seed=5)


@pytest.fixture(scope="module")
def running_server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def server(running_server):
    # One server for the module (starting uvicorn costs more than most tests); fresh behaviour and records
    # per test. A handler still sleeping from an earlier test writes to that test's Behaviour, not this one.
    running_server.behaviour = Behaviour()
    return running_server


def make_policy(base_url: str, **kwargs) -> OpenAIPolicy:
    kwargs.setdefault("backoff", 0.01)
    return OpenAIPolicy(base_url, "tiny-llama", **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def completion(*choices: dict, usage: dict | None = None) -> dict:
    body = {"id": "c", "object": "chat.completion", "choices": list(choices)}
    if usage is not None:
        body["usage"] = usage
    return body


def test_several_prompts_get_n_samples_each_in_prompt_order(server):
    with make_policy(server.base_url, api_key=KEY) as policy:
        out = policy.sample(PROMPTS, PARAMS)
    assert [len(row) for row in out] == [3, 3, 3]
    for row, question in zip(out, ["first?", "second?", "third?"], strict=True):
        # The fake lists choices in reverse; the policy puts them back in index order.
        assert [re.fullmatch(r"answer \d+\.(\d) to: (.*)", s.text).groups() for s in row] == [
            ("0", question), ("1", question), ("2", question)]
        assert [s.finish_reason for s in row] == ["stop", "length", "stop"]
        # usage says 18 tokens for 3 choices together: split evenly and flagged as an estimate.
        assert [(s.token_count, s.extra) for s in row] == [(6, {"token_count_estimated": True, "seed": 5})] * 3
    bodies = {b["messages"][-1]["content"]: b for b in server.behaviour.requests}
    assert len(server.behaviour.requests) == 3
    assert bodies["first?"] == {"model": "tiny-llama", "messages": [{"role": "user", "content": "first?"}], "n": 3,
                                "temperature": 0.9, "top_p": 0.8, "max_tokens": 16, "seed": 5}
    assert bodies["second?"]["messages"] == [{"role": "system", "content": "be terse"},
                                             {"role": "user", "content": "second?"}]
    assert [h["authorization"] for h in server.behaviour.headers] == [f"Bearer {KEY}"] * 3
    assert server.behaviour.paths == ["/v1/chat/completions"] * 3


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/", "/v1/chat/completions"])
def test_base_url_with_or_without_v1_reaches_chat_completions(server, suffix):
    root = server.base_url.removesuffix("/v1")
    with make_policy(root + suffix) as policy:
        [[sample]] = policy.sample(PROMPTS[:1], SamplingParams(n=1))
    assert policy.base_url == server.base_url and policy.client.is_closed
    assert server.behaviour.paths == ["/v1/chat/completions"]
    assert "authorization" not in server.behaviour.headers[0] and "seed" not in server.behaviour.requests[0]
    # One choice: usage is exact, and no seed was asked for so none is recorded.
    assert (sample.token_count, sample.finish_reason, sample.extra) == (6, "stop", {})


def test_a_base_url_without_a_scheme_is_refused_at_once():
    with pytest.raises(PolicyError, match="must start with http:// or https://"):
        OpenAIPolicy("127.0.0.1:8001/v1", "m")


def test_prompts_are_sent_concurrently_at_most_eight_at_once(server):
    server.behaviour.delay = 0.3
    prompts = [PromptSpec(text=f"q{i}") for i in range(12)]
    started = time.monotonic()
    with make_policy(server.base_url) as policy:
        out = policy.sample(prompts, SamplingParams(n=1))
    elapsed = time.monotonic() - started
    assert [re.fullmatch(r"answer \d+\.0 to: (q\d+)", row[0].text).group(1) for row in out] == [
        f"q{i}" for i in range(12)]
    assert server.behaviour.max_in_flight == 8
    assert elapsed < 12 * 0.3 / 2  # two waves of 0.3 s, far from twelve in a row


def test_finish_reasons_null_content_and_missing_usage(server):
    server.behaviour.body = completion(
        {"index": 3, "message": {"role": "assistant", "content": "cut short"}, "finish_reason": "max_tokens"},
        {"index": 0, "message": {"role": "assistant", "content": " three little words\n"}, "finish_reason": "eos"},
        {"index": 1, "message": {"role": "assistant", "content": None}, "finish_reason": "end_turn"},
        {"index": 2, "message": {"role": "assistant", "content": "filtered out"}, "finish_reason": "content_filter"},
    )
    with make_policy(server.base_url) as policy:
        [row] = policy.sample(PROMPTS[:1], SamplingParams(n=4))
    assert [(s.text, s.finish_reason, s.token_count) for s in row] == [
        ("three little words", "stop", 3), ("", "stop", 0), ("filtered out", "stop", 2), ("cut short", "length", 2)]
    assert all(s.extra["token_count_estimated"] for s in row)  # no usage: whitespace words
    assert row[2].extra["finish_reason"] == "content_filter"
    assert "finish_reason" not in row[0].extra and "finish_reason" not in row[3].extra


def test_server_errors_are_retried_until_an_answer(server):
    server.behaviour.fail_first = 2
    with make_policy(server.base_url) as policy:
        [row] = policy.sample(PROMPTS[:1], PARAMS)
    assert len(row) == 3 and all(s.text.endswith("to: first?") for s in row)
    assert len(server.behaviour.requests) == 3
    assert server.behaviour.requests[0] == server.behaviour.requests[2]  # the same question, asked again


def test_too_many_requests_waits_as_long_as_retry_after_says(server):
    server.behaviour.fail_first, server.behaviour.fail_status, server.behaviour.retry_after = 1, 429, "1"
    with make_policy(server.base_url, backoff=0.01) as policy:
        [[sample]] = policy.sample(PROMPTS[:1], SamplingParams(n=1))
    first, second = server.behaviour.times
    assert sample.text.endswith("to: first?") and 1.0 <= second - first < 3.0


@pytest.mark.parametrize(("header", "seconds"), [
    ("2", 2.0), ("0.5", 0.5), ("120", 30.0), (None, None), ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("-1", None)])
def test_retry_after_is_read_in_seconds_and_capped(header, seconds):
    assert _retry_after_seconds(header) == seconds


def test_an_outage_gives_up_as_unavailable_after_all_tries(server):
    server.behaviour.fail_first = 100
    with make_policy(server.base_url, max_retries=2) as policy, pytest.raises(PolicyUnavailable) as err:
        policy.sample(PROMPTS[:1], PARAMS)
    assert str(err.value) == (f"OpenAI-compatible server at {server.base_url} failed after 3 tries: "
                              "answered 503: overloaded")
    assert len(server.behaviour.requests) == 3


def test_a_refused_key_fails_at_once_with_the_servers_words_and_without_the_key(server):
    server.behaviour.status = 401
    with make_policy(server.base_url, api_key=KEY) as policy, pytest.raises(PolicyError) as err:
        policy.sample(PROMPTS[:1], PARAMS)
    assert str(err.value) == f"OpenAI-compatible server at {server.base_url} answered 401: invalid api key"
    assert not isinstance(err.value, PolicyUnavailable)  # a wrong key does not fix itself; the job must not retry
    assert len(server.behaviour.requests) == 1


def test_a_key_the_server_echoes_back_is_redacted(server):
    server.behaviour.status, server.behaviour.error_message = 403, f"key {KEY} may not use tiny-llama"
    with make_policy(server.base_url, api_key=KEY) as policy, pytest.raises(PolicyError) as err:
        policy.sample(PROMPTS[:1], PARAMS)
    assert KEY not in str(err.value) and "answered 403: key [api key] may not use tiny-llama" in str(err.value)
    assert KEY not in repr(policy)


def test_other_client_errors_are_not_retried(server):
    server.behaviour.status, server.behaviour.error_message = 404, "The model `tiny-llama` does not exist."
    with make_policy(server.base_url) as policy, pytest.raises(PolicyError) as err:
        policy.sample(PROMPTS, PARAMS)
    assert str(err.value).endswith("answered 404: The model `tiny-llama` does not exist.")
    # None repeated; prompts not yet sent when the first refusal came back may never be sent.
    asked = [r["messages"][-1]["content"] for r in server.behaviour.requests]
    assert 1 <= len(asked) <= 3 and len(asked) == len(set(asked))


def test_a_body_that_is_not_json_is_reported(server):
    server.behaviour.malformed = True
    with make_policy(server.base_url) as policy, pytest.raises(PolicyError) as err:
        policy.sample(PROMPTS[:1], PARAMS)
    assert str(err.value) == (f"OpenAI-compatible server at {server.base_url} answered 200 but the body is not an "
                              "OpenAI chat completion: not JSON ('<html>not json</html>')")
    assert len(server.behaviour.requests) == 1


@pytest.mark.parametrize(("body", "why"), [
    ({"object": "list", "data": []}, "missing 'choices'"),
    ([1, 2], "missing 'choices'"),
    ({"choices": []}, "'choices' is [], not a list with at least one choice"),
    ({"choices": [{"index": 0, "text": "a legacy completion"}]}, "choice 0 has no 'message'"),
    ({"choices": [{"index": 0, "message": {"content": ["a", "b"]}}]}, "choice 0's message content is not text"),
])
def test_json_that_is_not_a_chat_completion_is_reported(server, body, why):
    server.behaviour.body = body
    with make_policy(server.base_url) as policy, pytest.raises(PolicyError) as err:
        policy.sample(PROMPTS[:1], PARAMS)
    assert str(err.value) == (f"OpenAI-compatible server at {server.base_url} answered 200 but the body is not an "
                              f"OpenAI chat completion: {why}")
    assert len(server.behaviour.requests) == 1


def test_a_server_that_ignores_n_is_asked_again_with_the_next_seeds(server):
    server.behaviour.ignore_n = True
    with make_policy(server.base_url) as policy:
        out = policy.sample(PROMPTS[:2], PARAMS)
    assert [len(row) for row in out] == [3, 3]
    assert all(s.text.endswith("to: first?") for s in out[0]) and all(s.text.endswith("to: second?") for s in out[1])
    for question in ("first?", "second?"):
        asked = [b for b in server.behaviour.requests if b["messages"][-1]["content"] == question]
        assert [(b["n"], b["seed"]) for b in asked] == [(3, 5), (2, 6), (1, 7)]
    assert [s.extra["seed"] for s in out[0]] == [5, 6, 7]
    assert all(s.token_count == 6 and "token_count_estimated" not in s.extra for row in out for s in row)


def test_a_slow_server_times_out_after_retries_in_bounded_time(server):
    server.behaviour.delay = 1.0
    started = time.monotonic()
    with make_policy(server.base_url, timeout=0.2, max_retries=2) as policy, pytest.raises(PolicyUnavailable) as err:
        policy.sample(PROMPTS[:1], PARAMS)
    assert time.monotonic() - started < 1.5
    assert str(err.value) == (f"OpenAI-compatible server at {server.base_url} failed after 3 tries: "
                              "timed out (no answer within 0.2s)")
    assert len(server.behaviour.requests) == 3


def test_nobody_listening_fails_naming_the_url():
    port = free_port()
    started = time.monotonic()
    with make_policy(f"http://127.0.0.1:{port}", api_key=KEY, max_retries=2) as policy, \
            pytest.raises(PolicyUnavailable) as err:
        policy.sample(PROMPTS, PARAMS)
    message = str(err.value)
    assert message.startswith(f"OpenAI-compatible server at http://127.0.0.1:{port}/v1 failed after 3 tries: "
                              "could not connect (")
    assert "is the server running" in message and KEY not in message
    assert time.monotonic() - started < 2


def test_n_below_one_is_refused_and_no_prompts_ask_nothing(server):
    with make_policy(server.base_url) as policy:
        assert policy.sample([], PARAMS) == []
        with pytest.raises(PolicyError, match="n must be at least 1"):
            policy.sample(PROMPTS, SamplingParams(n=0))
    assert server.behaviour.requests == []
