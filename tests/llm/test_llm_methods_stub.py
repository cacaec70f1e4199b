"""The three LLM methods end to end through run_method, against a scripted stub server.

The stub answers deterministically from the prompt text, so the tests can check
parsing, the mapping of scores back to the stored candidate order under every
``candidate_order``, the responses table and the run.json statistics.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("openai")
sys.path.insert(0, str(Path(__file__).parent))

from llm_fault_server import FaultServer  # noqa: E402

LINE = re.compile(r"^\[(\d+)\] (.+?) \(", re.MULTILINE)


def _prompt(body) -> str:
    return body["messages"][-1]["content"]


def _title_of(text: str) -> str:
    return text.split(" (")[0].strip()


def listwise_responder(mode: str):
    def respond(body):
        ids = sorted(LINE.findall(_prompt(body)), key=lambda x: x[1])  # alphabetical by title
        if mode == "ids":
            return {"content": " > ".join(f"[{n}]" for n, _ in ids)}
        if mode == "partial":  # drops the last 3, repeats one, invents [99]
            keep = [f"[{n}]" for n, _ in ids[:-3]]
            return {"content": " > ".join(keep[:2] + [keep[0], "[99]"] + keep[2:])}
        if mode == "titles":
            return {"content": "\n".join(f"{i + 1}. {t}" for i, (_, t) in enumerate(ids))}
        return {"content": "I would need more information to decide."}

    return respond


def _run(method, bench_path, fs, tmp_path, limit=3, **overrides):
    from r2bench.pipeline import run_method
    from r2bench.runs import load_run

    ov = {"base_url": fs.base_url, "model": "stub", "cache_path": str(tmp_path / "cache.sqlite"),
          "timeout_s": 10, "max_retries": 1, "backoff_base_s": 0.01}
    ov.update(overrides)
    path = run_method(method, bench_path, split="test", limit=limit, seed=3, overrides=ov, out=tmp_path / "runs")
    return load_run(path)


def _dense(run) -> dict[tuple[int, str], float]:
    return {(r["instance_id"], r["item_id"]): r["score"] for r in run.scores.iter_rows(named=True)}


def _titles(bench_path) -> dict[str, str]:
    items = pl.read_parquet(Path(bench_path) / "items.parquet")
    return dict(zip(items["item_id"], items["title"]))


def test_listwise_valid_answers_and_order_invariance(tiny_benchmark_path, tmp_path, monkeypatch):
    secret = "sk-stub-SECRET-77"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    titles = _titles(tiny_benchmark_path)
    with FaultServer() as fs:
        fs.state.responder = listwise_responder("ids")
        given = _run("llm-listwise", tiny_benchmark_path, fs, tmp_path)
        shuffled = _run("llm-listwise", tiny_benchmark_path, fs, tmp_path, candidate_order="shuffled")
        fs.state.responder = listwise_responder("titles")
        by_title = _run("llm-listwise", tiny_benchmark_path, fs, tmp_path, candidate_order="reversed")
    for run in (given, shuffled, by_title):
        assert run.info["parse"]["counts"] == {"valid": 3}
        assert (run.info["parse"]["valid"], run.info["parse"]["unusable"]) == (1.0, 0.0)
    # the stub ranks by title, whatever the presentation order: same score per candidate
    assert _dense(given) == _dense(shuffled) == _dense(by_title)
    for iid, grp in given.scores.group_by("instance_id"):
        best = grp.sort("score", descending=True)["item_id"][0]
        assert titles[best] == min(titles[i] for i in grp["item_id"])
        assert sorted(grp["score"].to_list()) == list(map(float, range(1, 21)))
    assert by_title.info["parse"]["matched"]["by_title"] == 60
    resp = given.table("responses")
    assert resp.height == 3 and resp["item_id"].null_count() == 3
    assert resp["prompt_hash"].str.len_chars().to_list() == [64] * 3
    assert given.info["llm"]["sent"] == 3 and given.info["llm"]["failed"] == 0
    assert given.meta["config"]["api_key_env"] == "OPENAI_API_KEY"
    for f in list(given.path.iterdir()) + [tmp_path / "cache.sqlite"]:
        assert secret.encode() not in f.read_bytes(), f


def test_listwise_partial_and_unusable_answers(tiny_benchmark_path, tmp_path):
    with FaultServer() as fs:
        fs.state.responder = listwise_responder("partial")
        partial = _run("llm-listwise", tiny_benchmark_path, fs, tmp_path)
        fs.state.responder = listwise_responder("garbage")
        garbage = _run("llm-listwise", tiny_benchmark_path, fs, tmp_path, candidate_order="shuffled")
    assert partial.info["parse"]["counts"] == {"partial": 3}
    assert partial.info["parse"]["partial"] == 1.0
    assert partial.info["parse"]["matched"]["duplicates"] == 3
    assert partial.info["parse"]["matched"]["hallucinated"] == 3
    for _, grp in partial.scores.group_by("instance_id"):
        s = np.sort(grp["score"].to_numpy())
        assert (s[:3] == 0).all() and s[3] > 0  # the 3 left out share the lowest score
    assert garbage.info["parse"]["counts"] == {"unusable": 3}
    assert garbage.scores["score"].unique().to_list() == [0.0]  # all tied: no benefit of list order


def pointwise_responder(body):
    item = _title_of(_prompt(body).split("Target item: ")[1])
    yes = -len(item) / 10.0
    top = [{"token": "Yes", "logprob": yes}, {"token": " no", "logprob": -1.0}]
    return {"content": "Yes", "logprobs": [{"token": "Yes", "logprob": yes, "top_logprobs": top}]}


def test_pointwise_scores_from_logprobs(tiny_benchmark_path, tmp_path):
    titles = _titles(tiny_benchmark_path)
    with FaultServer() as fs:
        fs.state.responder = pointwise_responder
        run = _run("llm-pointwise", tiny_benchmark_path, fs, tmp_path, limit=2)
        again = _run("llm-pointwise", tiny_benchmark_path, fs, tmp_path, limit=2, candidate_order="shuffled")
        sent = sum(fs.state.received.values())
    assert sent == 40  # the shuffled re-run was answered from the cache
    assert again.info["llm"]["cache_hits"] == 40
    for (iid, item), score in _dense(run).items():
        assert score == pytest.approx(-len(titles[item]) / 10.0 + 1.0)
    assert _dense(run) == _dense(again)
    assert run.info["parse"]["counts"] == {"logprob": 40}
    assert run.info["parse"]["valid"] == 1.0 and run.info["parse"]["logprob_share"] == 1.0
    assert run.info["usage"]["total_tokens"] == 40 * 16 and run.info["failures"] == {}
    resp = run.table("responses")
    assert resp.height == 40 and resp["item_id"].null_count() == 0
    assert set(resp["parse"]) == {"logprob"}


def reflective_responder(with_logprobs: bool):
    def respond(body):
        item = _title_of(_prompt(body).split("Candidate Item: ")[1])
        rec = int(item.split()[-1]) % 2 == 0
        decision = "Recommend" if rec else "Not Recommend"
        out = {"content": f"#Initial reasoning: fits.\n#Self-check: fine.\n<answer>{decision}</answer>"}
        if with_logprobs:
            toks = ["#Initial reasoning: fits.\n#Self-check: fine.\n", "<answer>", decision.split()[0]]
            first = -0.2 if rec else -1.5
            top = [{"token": "Recommend", "logprob": first}, {"token": "Not", "logprob": -0.7}]
            out["logprobs"] = [{"token": t, "logprob": -0.1, "top_logprobs": top if i == 2 else []} for i, t in enumerate(toks)]
        return out

    return respond


@pytest.mark.parametrize("with_logprobs", [False, True])
def test_reflective_decisions(tiny_benchmark_path, tmp_path, with_logprobs):
    titles = _titles(tiny_benchmark_path)
    with FaultServer() as fs:
        fs.state.responder = reflective_responder(with_logprobs)
        run = _run("llm-reflective", tiny_benchmark_path, fs, tmp_path, limit=2, max_tokens=64)
        prompt = _prompt(json.loads(json.dumps({"messages": [{"content": list(fs.state.received)[0]}]})))
    assert "<answer>Recommend</answer> or <answer>Not Recommend</answer>" in prompt  # Figure 2
    for (iid, item), score in _dense(run).items():
        rec = int(titles[item].split()[-1]) % 2 == 0
        if with_logprobs:
            assert score == pytest.approx(0.5 if rec else -0.8)
        else:
            assert score == (1.0 if rec else -1.0)
    assert run.info["parse"]["counts"] == {("logprob" if with_logprobs else "answer"): 40}
