"""The client against a misbehaving server: retries, failure records, no cached failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("openai")
sys.path.insert(0, str(Path(__file__).parent))

from llm_fault_server import FaultServer  # noqa: E402

from r2bench.errors import R2BenchError  # noqa: E402
from r2bench.llm.cache import ResponseCache, request_key  # noqa: E402
from r2bench.llm.client import LLMClient, parse_retry_after  # noqa: E402
from r2bench.llm.config import ClientConfig  # noqa: E402


def _cfg(fs: FaultServer, tmp_path: Path, **kw) -> ClientConfig:
    base = dict(
        base_url=fs.base_url, model="fault", concurrency=4, timeout_s=2.0, max_retries=3,  # < hang_s (5 s); a loaded box answers "ok" in > 0.5 s
        backoff_base_s=0.01, backoff_max_s=0.05, max_tokens=16, cache_path=str(tmp_path / "cache.sqlite"),
    )
    base.update(kw)
    return ClientConfig(**base)


def _msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


PROMPTS = {
    "ok": "plain question",
    "429": "FAULT=429 please",
    "500": "FAULT=500 please",
    "hang": "FAULT=hang please",
    "badjson": "FAULT=badjson please",
    "nochoices": "FAULT=nochoices please",
    "empty": "FAULT=empty please",
    "length": "FAULT=length please",
    "dead": "FAULT=500*99 please",
    "think": "FAULT=think please",
}


def test_faults_are_retried_recorded_and_never_cached(tmp_path):
    with FaultServer() as fs:
        client = LLMClient(_cfg(fs, tmp_path))
        reqs = [client.request(_msgs(p)) for p in PROMPTS.values()]
        res = dict(zip(PROMPTS, client.run_batch(reqs)))

        for name in ("ok", "429", "500", "hang", "badjson", "nochoices", "empty"):
            assert res[name].ok, (name, res[name])
            assert res[name].error is None
            assert res[name].answer.startswith("echo:")
        assert res["ok"].attempts == 1
        for name in ("429", "500", "hang", "badjson", "nochoices", "empty"):
            assert res[name].attempts == 2, name
        assert res["429"].waits == [1.0]  # Retry-After honoured, not the 0.01 s backoff
        assert all(w <= 0.05 for w in res["500"].waits)

        assert not res["length"].ok and res["length"].error == "truncated"
        assert res["length"].attempts == 1  # the same request would be cut again
        assert res["length"].answer == "[3] > [1] > ["  # the partial text still reaches the parser
        assert not res["dead"].ok and res["dead"].error == "server_error"
        assert res["dead"].attempts == 4

        assert res["think"].ok and res["think"].answer == "The answer: yes"
        assert "field thoughts" in res["think"].reasoning and "inline thoughts" in res["think"].reasoning
        assert res["think"].reasoning_tokens == 7

        usage = client.usage()
        assert usage["calls"] == len(PROMPTS) and usage["failed"] == 2
        assert usage["failures"] == {"server_error": 1, "truncated": 1}
        assert usage["retries"] == 6 + 3
        assert usage["prompt_tokens"] > 0

        cache = ResponseCache(tmp_path / "cache.sqlite")
        stored = cache.get_many(request_key(r) for r in reqs)
        assert len(stored) == len(PROMPTS) - 2
        assert request_key(reqs[list(PROMPTS).index("length")]) not in stored
        assert request_key(reqs[list(PROMPTS).index("dead")]) not in stored

        # a re-run answers the successes from the cache and re-sends only the failures
        before = dict(fs.state.received)
        again = dict(zip(PROMPTS, LLMClient(_cfg(fs, tmp_path)).run_batch(reqs)))
        for name, prompt in PROMPTS.items():
            if name in ("length", "dead"):
                assert fs.state.received[prompt] > before[prompt]
                assert not again[name].cached
            else:
                assert fs.state.received[prompt] == before[prompt], name
                assert again[name].cached and again[name].answer == res[name].answer
        for prompt, n in fs.state.succeeded.items():
            assert n == 1, prompt


def test_repeated_request_in_a_batch_is_sent_once(tmp_path):
    with FaultServer() as fs:
        client = LLMClient(_cfg(fs, tmp_path, cache=False))
        r = client.request(_msgs("same"))
        out = client.run_batch([r, r, r])
        assert [o.answer for o in out] == [out[0].answer] * 3
        assert fs.state.received["same"] == 1
        assert client.usage()["sent"] == 1


def test_api_key_reaches_the_server_but_nothing_on_disk(tmp_path, monkeypatch):
    secret = "sk-test-SECRET-4242"
    monkeypatch.setenv("R2B_TEST_KEY", secret)
    with FaultServer() as fs:
        cfg = _cfg(fs, tmp_path, api_key_env="R2B_TEST_KEY")
        client = LLMClient(cfg)
        req = client.request(_msgs("who am i"))
        assert client.run_batch([req])[0].ok
        assert fs.state.auth_seen[-1] == f"Bearer {secret}"
        assert secret not in repr(client) and secret not in repr(cfg) and secret not in str(req)
        client.close()
        for f in tmp_path.iterdir():
            assert secret.encode() not in f.read_bytes(), f
    # the cache key ignores where the request goes
    other = LLMClient(ClientConfig(base_url="http://localhost:1/v1", model="fault", max_tokens=16, cache=False))
    assert request_key(other.request(_msgs("who am i"))) == request_key(req)


def test_bad_key_stops_the_run(tmp_path):
    with FaultServer() as fs:
        client = LLMClient(_cfg(fs, tmp_path))
        with pytest.raises(R2BenchError, match="refused the API key"):
            client.run_batch([client.request(_msgs("FAULT=401"))])


def test_remote_endpoint_without_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("R2B_NO_SUCH_KEY", raising=False)
    cfg = ClientConfig(base_url="https://api.example.com/v1", api_key_env="R2B_NO_SUCH_KEY", cache=False)
    client = LLMClient(cfg)
    with pytest.raises(R2BenchError, match="R2B_NO_SUCH_KEY"):
        client.run_batch([client.request(_msgs("hi"))])


def test_parse_retry_after():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
