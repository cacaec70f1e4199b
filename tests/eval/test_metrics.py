"""Hand-computed metric values, exact tie expectations and graded relevance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from r2bench.eval.metrics import (
    DEFAULT_METRICS,
    expected_dcg,
    expected_ndcg,
    ideal_dcg,
    parse_metric,
    per_instance_metrics,
    random_expectation,
    tie_counts,
)


def disc(r: int) -> float:
    return 1.0 / math.log2(r + 1)


def test_untied_ranks_by_hand():
    # target (index 2) scores 0.7; two candidates score higher -> rank 3
    s = np.array([[0.9, 0.8, 0.7, 0.1] + [0.0] * 16])
    m = per_instance_metrics(s, np.array([2]))
    assert m["target_rank"][0] == 3
    assert m["ndcg@1"][0] == 0
    assert m["ndcg@5"][0] == pytest.approx(0.5)  # 1/log2(4)
    assert m["ndcg@10"][0] == pytest.approx(0.5)
    assert m["hr@1"][0] == 0 and m["hr@5"][0] == 1 and m["hr@10"][0] == 1
    assert m["mrr"][0] == pytest.approx(1 / 3)


def test_top_and_bottom():
    s = np.arange(20, dtype=float)[None, :].repeat(2, axis=0)
    m = per_instance_metrics(s, np.array([19, 0]))
    assert m["ndcg@1"].tolist() == [1.0, 0.0]
    assert m["target_rank"].tolist() == [1.0, 20.0]
    assert m["ndcg@10"][1] == 0 and m["hr@10"][1] == 0
    assert m["mrr"][1] == pytest.approx(1 / 20)


def test_constant_scores_give_exact_random_expectation():
    m = per_instance_metrics(np.full((3, 20), 0.5), np.array([0, 7, 19]))
    assert np.allclose(m["ndcg@1"], 0.05)
    assert np.allclose(m["ndcg@10"], sum(disc(r) for r in range(1, 11)) / 20)
    assert round(float(m["ndcg@10"][0]), 4) == 0.2272
    assert round(float(m["ndcg@5"][0]), 4) == 0.1474
    assert np.allclose(m["target_rank"], 10.5)
    assert np.allclose(m["hr@10"], 0.5)
    assert random_expectation("ndcg@10") == pytest.approx(m["ndcg@10"][0])


def test_partial_tie_by_hand():
    # one candidate above, target tied with 2 others -> rank uniform on {2, 3, 4}
    s = np.array([[5.0, 3.0, 3.0, 3.0] + [1.0] * 16])
    m = per_instance_metrics(s, np.array([2]))
    assert m["ndcg@1"][0] == 0
    assert m["ndcg@5"][0] == pytest.approx((disc(2) + disc(3) + disc(4)) / 3)
    assert m["hr@1"][0] == 0
    # tie straddling the cut-off: rank uniform on {1, 2} with k = 1 -> 1/2
    s2 = np.array([[2.0, 2.0] + [0.0] * 18])
    m2 = per_instance_metrics(s2, np.array([1]))
    assert m2["ndcg@1"][0] == pytest.approx(0.5)
    assert m2["hr@1"][0] == pytest.approx(0.5)
    assert m2["mrr"][0] == pytest.approx(0.75)
    assert m2["target_rank"][0] == pytest.approx(1.5)


def test_tie_expectation_equals_enumeration_over_orders():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 3, size=(1, 6)).astype(float)
    target = 4
    got = per_instance_metrics(s, np.array([target]), ["ndcg@3", "mrr"])
    vals = {"ndcg@3": [], "mrr": []}
    for perm in itertools.permutations(range(6)):
        # break ties by the permutation order
        order = sorted(range(6), key=lambda i: (-s[0, i], perm.index(i)))
        r = order.index(target) + 1
        vals["ndcg@3"].append(disc(r) if r <= 3 else 0.0)
        vals["mrr"].append(1 / r)
    assert got["ndcg@3"][0] == pytest.approx(np.mean(vals["ndcg@3"]))
    assert got["mrr"][0] == pytest.approx(np.mean(vals["mrr"]))


def test_order_of_stored_candidates_does_not_matter():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, size=(50, 20)).astype(float)
    ti = rng.integers(0, 20, size=50)
    base = per_instance_metrics(s, ti)
    perm = rng.permutation(20)
    inv = np.argsort(perm)
    moved = per_instance_metrics(s[:, perm], inv[ti])
    for name in DEFAULT_METRICS:
        assert np.allclose(base[name], moved[name])


def test_tie_counts():
    g, t = tie_counts(np.array([[1.0, 2.0, 2.0, 0.0]]), np.array([1]))
    assert g.tolist() == [0] and t.tolist() == [2]


def test_graded_relevance_by_hand_no_ties():
    s = np.array([[3.0, 2.0, 1.0]])
    rel = np.array([[1.0, 2.0, 0.0]])
    dcg = (2**1 - 1) * disc(1) + (2**2 - 1) * disc(2)
    idcg = (2**2 - 1) * disc(1) + (2**1 - 1) * disc(2)
    assert expected_dcg(s, rel)[0] == pytest.approx(dcg)
    assert ideal_dcg(rel)[0] == pytest.approx(idcg)
    assert expected_ndcg(s, rel)[0] == pytest.approx(dcg / idcg)
    # cut-off 1: only the first position counts
    assert expected_ndcg(s, rel, k=1)[0] == pytest.approx(1 / 3)


def test_graded_relevance_with_ties_average_discount():
    # items 0 and 1 tie at the top: each gets the mean discount of positions 1 and 2
    s = np.array([[1.0, 1.0, 0.0]])
    rel = np.array([[2.0, 0.0, 1.0]])
    avg = (disc(1) + disc(2)) / 2
    want_dcg = 3 * avg + 1 * disc(3)
    assert expected_dcg(s, rel)[0] == pytest.approx(want_dcg)
    # equals the mean over the two possible orders
    orders = [3 * disc(1) + 1 * disc(3), 3 * disc(2) + 1 * disc(3)]
    assert expected_dcg(s, rel)[0] == pytest.approx(np.mean(orders))
    # with cut-off 1 the tie straddles the cut: 3 * (disc(1) + 0) / 2
    assert expected_dcg(s, rel, k=1)[0] == pytest.approx(1.5)


def test_graded_matches_binary_path():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 3, size=(200, 20)).astype(float)
    ti = rng.integers(0, 20, size=200)
    rel = np.zeros_like(s)
    rel[np.arange(200), ti] = 1
    for k in (1, 5, 10):
        assert np.allclose(expected_ndcg(s, rel, k), per_instance_metrics(s, ti, [f"ndcg@{k}"])[f"ndcg@{k}"])


def test_no_relevant_item_gives_zero():
    assert expected_ndcg(np.zeros((1, 4)), np.zeros((1, 4)))[0] == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="finite"):
        per_instance_metrics(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="target_index"):
        per_instance_metrics(np.zeros((1, 3)), np.array([3]))
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric("precision@3")
    with pytest.raises(ValueError, match="cut-off"):
        parse_metric("ndcg")
    assert parse_metric("NDCG@10") == ("ndcg", 10)
