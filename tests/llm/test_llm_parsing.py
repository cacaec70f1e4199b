"""Unit tests: reasoning separation, listwise parsing, yes/no and decision scores, cache, orders."""

from __future__ import annotations

import numpy as np
import pytest

from r2bench.llm.cache import ResponseCache, request_key
from r2bench.llm.parse import (
    PARTIAL,
    UNUSABLE,
    VALID,
    decision_score,
    parse_ranking,
    ranking_scores,
    yes_no_score,
)
from r2bench.llm.reasoning import split_reasoning
from r2bench.llm.usage import CallResult, summarize

TITLES = ["Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)", "Get Shorty (1995)", "Heat (1995)"]


@pytest.mark.parametrize(
    "content, message, answer, reasoning",
    [
        ("[1] > [2]", None, "[1] > [2]", None),
        ("<think>maybe [5]</think>\n[1] > [2]", None, "[1] > [2]", "maybe [5]"),
        ("considering [5]...</think>[2] > [1]", None, "[2] > [1]", "considering [5]..."),
        ("<think>still thinking about [3]", None, "", "still thinking about [3]"),
        ("[1]", {"reasoning_content": "from the field"}, "[1]", "from the field"),
        ("<THINK>a</THINK>b", {"reasoning": "r"}, "b", "r\n\na"),
    ],
)
def test_split_reasoning(content, message, answer, reasoning):
    assert split_reasoning(content, message) == (answer, reasoning)


def test_parse_ranking_identifiers_titles_fuzzy_duplicates_hallucinations():
    p = parse_ranking("[2] > [1] > [5] > [4] > [3]", TITLES)
    assert p.order == [1, 0, 4, 3, 2] and p.status == VALID and p.by_id == 5

    p = parse_ranking("1. GoldenEye (1995)\n2. toy story\n3. [9]\n4. Goldeneye\n5. The Matrix\n6. Four Roms (1995)", TITLES)
    assert p.order == [1, 0, 2]
    assert (p.by_title, p.by_fuzzy, p.duplicates, p.hallucinated) == (2, 1, 1, 2)
    assert p.status == PARTIAL

    assert parse_ranking("I cannot rank these.", TITLES).status == UNUSABLE
    assert parse_ranking(None, TITLES).status == UNUSABLE
    # identifiers win over titles in the same segment; thinking is never parsed (split beforehand)
    assert parse_ranking("[3] Toy Story (1995)", TITLES).order == [2]


def test_ranking_scores_leave_unranked_tied_lowest():
    s = ranking_scores([3, 0], 5)
    assert s == [4.0, 0.0, 0.0, 5.0, 0.0]


def test_yes_no_score_prefers_logprobs_and_falls_back():
    lp = [{"token": "Yes", "logprob": -0.1, "top": [["Yes", -0.1], [" yes", -3.0], ["No", -2.5]]}]
    score, src = yes_no_score("Yes", lp)
    assert src == "logprob"
    assert score == pytest.approx(np.logaddexp(-0.1, -3.0) + 2.5)
    # only "No" shown: "Yes" is bounded by the least likely alternative shown
    lp = [{"token": "No", "logprob": -0.2, "top": [["No", -0.2], ["The", -4.0]]}]
    assert yes_no_score("No", lp) == (pytest.approx(-3.8), "logprob")
    # a leading token without Yes/No is skipped
    lp = [{"token": "\n", "logprob": -0.1, "top": [["\n", -0.1]]}, {"token": "No", "logprob": -0.1, "top": [["No", -0.1], ["Yes", -1.1]]}]
    assert yes_no_score("No", lp)[0] == pytest.approx(-1.0)
    assert yes_no_score("yes, I think so", None) == (1.0, "answer")
    assert yes_no_score("No.", []) == (-1.0, "answer")
    assert yes_no_score("Maybe", None) == (0.0, "none")


def test_decision_score():
    assert decision_score("blah <answer>Recommend</answer>", None) == (1.0, "Recommend", "answer")
    assert decision_score("<answer>Not Recommend</answer>", None) == (-1.0, "Not Recommend", "answer")
    assert decision_score("<answer>Not Rec", None) == (-1.0, "Not Recommend", "answer")  # truncated
    assert decision_score("no decision", None) == (0.0, None, "none")
    lp = [{"token": t, "logprob": -0.1, "top": []} for t in ["x", "<", "answer", ">"]]
    lp.append({"token": "Rec", "logprob": -0.3, "top": [["Rec", -0.3], ["Not", -1.0]]})
    lp.append({"token": "ommend", "logprob": -0.01, "top": []})
    score, decision, src = decision_score("x<answer>Recommend", lp)
    assert (decision, src) == ("Recommend", "logprob") and score == pytest.approx(0.7)


def test_cache_roundtrip_and_keys(tmp_path):
    req = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0, "max_tokens": 8, "seed": 0}
    k = request_key(req)
    assert k == request_key(dict(reversed(list(req.items()))))  # canonical: key order does not matter
    assert k != request_key({**req, "seed": 1}) and k != request_key({**req, "max_tokens": 9})
    with ResponseCache(tmp_path / "c.sqlite") as c:
        assert c.get(k) is None
        res = CallResult(key=k, ok=True, answer="hello", finish_reason="stop", prompt_tokens=3, completion_tokens=1)
        c.put(k, "m", res.to_cache())
        back = CallResult.from_cache(k, c.get(k))
        assert back.cached and back.ok and back.answer == "hello" and back.prompt_tokens == 3
        assert set(c.get_many([k, "missing"])) == {k} and len(c) == 1


def test_summarize_costs_only_sent_requests():
    fresh = CallResult(key="a", ok=True, prompt_tokens=1_000_000, completion_tokens=500_000, attempts=2, latency_s=1.0)
    hit = CallResult(key="b", ok=True, cached=True, prompt_tokens=1_000_000, completion_tokens=0)
    bad = CallResult(key="c", ok=False, error="rate_limit", attempts=3)
    s = summarize([fresh, hit, bad], price_in=0.5, price_out=2.0)
    assert (s["calls"], s["cache_hits"], s["sent"], s["failed"], s["retries"]) == (3, 1, 2, 1, 3)
    assert s["failures"] == {"rate_limit": 1}
    assert s["cost"] == pytest.approx(0.5 + 1.0)
    assert s["cost_without_cache"] == pytest.approx(1.0 + 1.0)
    assert "cost" not in summarize([fresh])


def test_presentation_orders_are_permutations_and_seeded():
    from baselines.llm_api import presentation_order
    from r2bench.errors import R2BenchError

    assert presentation_order("given", 4, 0, 7).tolist() == [0, 1, 2, 3]
    assert presentation_order("reversed", 4, 0, 7).tolist() == [3, 2, 1, 0]
    a = presentation_order("shuffled", 20, 1, 7)
    assert sorted(a.tolist()) == list(range(20))
    assert (a == presentation_order("shuffled", 20, 1, 7)).all()
    assert not (a == presentation_order("shuffled", 20, 1, 8)).all()
    with pytest.raises(R2BenchError):
        presentation_order("sideways", 4, 0, 0)


def test_method_configs_take_client_settings_from_set():
    from baselines.llm_api import ListwiseMethod, PointwiseMethod, ReflectiveMethod
    from r2bench.config import build_config
    from r2bench.errors import R2BenchError

    cfg = build_config(ListwiseMethod.Config, {"base_url": "http://127.0.0.1:9/v1", "candidate_order": "shuffled",
                                               "concurrency": "8", "price_input_per_1m": "0.55"})
    assert (cfg.base_url, cfg.candidate_order, cfg.concurrency, cfg.price_input_per_1m) == (
        "http://127.0.0.1:9/v1", "shuffled", 8, 0.55)
    with pytest.raises(R2BenchError):
        build_config(PointwiseMethod.Config, {"candidate_order": "sideways"})
    assert build_config(ReflectiveMethod.Config, {"no_cot": "true"}).no_cot is True
    assert not hasattr(cfg, "api_key")
