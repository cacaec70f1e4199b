"""Speed and agreement of r2bench's evaluator against ranx on one large synthetic run.

    python bench/evaluate.py [--n 1000000] [--skip-ranx]

Builds N instances x 20 candidates with UNTIED random scores (ranx breaks ties by
document order while r2bench takes the exact expectation over tied orders, so the
values only agree without ties), then times:

1. r2bench metrics on dense arrays (``per_instance_metrics``: NDCG@1/5/10, HR@k, MRR, rank);
2. r2bench's full evaluator from the long-form run (``evaluate_scores``: validation
   against the benchmark's candidates + joins by item id + metrics);
3. ranx: building ``Qrels``/``Run`` from the same long-form table (pandas) and
   ``evaluate`` (numba; the first call also compiles, so it is run twice and the
   second call is reported);

checks that per-instance values are equal (max |difference|) and prints the
seconds and the ratios.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import polars as pl

METRICS_OURS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10", "mrr")
RANX_NAME = {"ndcg@1": "ndcg@1", "ndcg@5": "ndcg@5", "ndcg@10": "ndcg@10", "hr@1": "hit_rate@1",
             "hr@5": "hit_rate@5", "hr@10": "hit_rate@10", "mrr": "mrr"}


def make_data(n: int, k: int = 20, n_items: int = 5000, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, n_items, size=n)
    cand = (base[:, None] + np.arange(k) * 7) % n_items  # distinct within a row
    ids = np.array([f"i{j}" for j in range(n_items)], dtype=object)
    ti = rng.integers(0, k, size=n)
    scores = rng.random((n, k))
    iid = np.arange(n, dtype=np.int64)
    flat_items = pl.Series("item_id", ids[cand.reshape(-1)].tolist(), dtype=pl.String)
    instances = pl.DataFrame({
        "instance_id": iid,
        "candidates": flat_items.reshape((n, k)).arr.to_list(),
        "target": ids[cand[np.arange(n), ti]].tolist(),
        "target_index": ti.astype(np.int8),
    })
    long = pl.DataFrame({"instance_id": np.repeat(iid, k), "item_id": flat_items, "score": scores.reshape(-1)})
    return instances, long, scores, ti


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--skip-ranx", action="store_true")
    args = ap.parse_args()

    from r2bench.eval.evaluate import evaluate_scores
    from r2bench.eval.metrics import per_instance_metrics

    print(f"{args.n:,} instances x 20 candidates, untied random scores; {os.cpu_count()} CPU cores")
    (instances, long, dense, ti), t_make = timed(make_data, args.n)
    print(f"data generated in {t_make:.1f}s")

    ours, t_dense = timed(per_instance_metrics, dense, ti, METRICS_OURS)
    print(f"r2bench metrics on dense [n, 20]:              {t_dense:8.2f} s")
    full, t_full = timed(evaluate_scores, long, instances)
    print(f"r2bench full evaluator (validate+join+metrics): {t_full:8.2f} s")
    # candidates reordered within each instance (what perturbation runs write)
    rng = np.random.default_rng(1)
    within = long[(np.arange(args.n)[:, None] * 20 + rng.permuted(np.tile(np.arange(20), (args.n, 1)), axis=1)).ravel()]
    full3, t_within = timed(evaluate_scores, within, instances)
    print(f"  same run, candidates reordered per instance:  {t_within:8.2f} s")
    shuffled = long.sample(fraction=1.0, shuffle=True, seed=1)
    full2, t_shuf = timed(evaluate_scores, shuffled, instances)
    print(f"  same run, all rows shuffled (global sort):    {t_shuf:8.2f} s")
    for m in METRICS_OURS:
        assert np.allclose(full[m].to_numpy(), ours[m]), m
        assert np.allclose(full2[m].to_numpy(), ours[m]), m
        assert np.allclose(full3[m].to_numpy(), ours[m]), m
    if args.skip_ranx:
        return

    from ranx import Qrels, Run, evaluate

    qdf = pl.DataFrame({"q_id": instances["instance_id"].cast(pl.String), "doc_id": instances["target"],
                        "score": np.ones(args.n, dtype=np.int64)}).to_pandas()
    rdf = long.with_columns(pl.col("instance_id").cast(pl.String).alias("q_id")).select(
        "q_id", pl.col("item_id").alias("doc_id"), "score").to_pandas()
    for df in (qdf, rdf):  # ranx wants object (str) columns
        df["q_id"] = df["q_id"].astype(object)
        df["doc_id"] = df["doc_id"].astype(object)
    t0 = time.perf_counter()
    qrels = Qrels.from_df(qdf)
    run = Run.from_df(rdf)
    t_build = time.perf_counter() - t0
    names = [RANX_NAME[m] for m in METRICS_OURS]
    _, t_first = timed(evaluate, qrels, run, names, return_mean=False)
    res, t_eval = timed(evaluate, qrels, run, names, return_mean=False)
    print(f"ranx Qrels/Run.from_df:                         {t_build:8.2f} s")
    print(f"ranx evaluate (first call, incl. numba compile): {t_first:8.2f} s")
    print(f"ranx evaluate (second call):                    {t_eval:8.2f} s")

    # ranx orders queries by its own (sorted string) keys: align by q_id
    keys = list(qrels.keys())
    order = np.array([int(q) for q in keys])
    worst = 0.0
    for m in METRICS_OURS:
        theirs = np.asarray(res[RANX_NAME[m]], dtype=np.float64)
        diff = float(np.abs(theirs - ours[m][order]).max())
        worst = max(worst, diff)
        print(f"  {m:<8} mean r2bench {ours[m].mean():.6f}  ranx {theirs.mean():.6f}  max|diff| {diff:.2e}")
    print(f"equal values: {worst < 1e-9} (max |difference| {worst:.2e})")
    print(f"ratio ranx evaluate / r2bench dense metrics:     {t_eval / t_dense:6.1f}x")
    print(f"ratio ranx (from_df + evaluate) / r2bench full:   {(t_build + t_eval) / t_full:6.1f}x")


if __name__ == "__main__":
    main()
