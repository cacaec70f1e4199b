"""The scoring head trained on frozen states: the cache changes nothing, early stopping keeps the best
head, the probe and REINFORCE learn a planted signal, and the CLI runs end to end."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from r2bench.r2rank.train_config import HeadTrainConfig  # noqa: E402


# fixtures `planted` (a benchmark with a planted signal) and `tiny` (a frozen tiny LM): conftest.py


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_head_lm")
    tiny[0].save_pretrained(d)
    tiny[1].save_pretrained(d)
    return d


def _cfg(**kw):
    base = {"no_cot": True, "max_reasoning_tokens": 3, "samples": 2, "shard_size": 16, "train_instances": "all",
            "eval_instances": 0, "device": "cpu", "dtype": "float32", "instances_per_step": 8,
            "ranking_samples": 8, "baseline": "loo", "lr_head": 3e-3, "head_hidden": 32}
    return HeadTrainConfig(**{**base, **kw})


def _cached(cfg, planted, tiny, root):
    from r2bench.r2rank.features import build_features, load_split
    from r2bench.r2rank.head_training import CachedStates

    model, tok = tiny
    f = build_features(cfg, planted, root, seed=0, model=model, tokenizer=tok, digests=("tiny", None))
    return CachedStates(load_split(f["train"])), CachedStates(load_split(f["val"]))


def test_head_from_the_cache_equals_the_head_trained_online(planted, tiny, tmp_path):
    """Same reasonings (seeded per instance and sample), same seeds: the same head, bit for bit."""
    from r2bench.r2rank.features import StateComputer, split_rows
    from r2bench.r2rank.head_training import OnlineStates, train_head

    model, tok = tiny
    cfg = _cfg(no_cot=False, train_instances="sample:12", eval_instances=5, epochs=3, patience=10)
    train_c, val_c = _cached(cfg, planted, tiny, tmp_path)
    train_o = OnlineStates(StateComputer(cfg, model, tok, planted, greedy=False, seed=0),
                           split_rows(planted, "train", "sample:12", 0))
    val_o = OnlineStates(StateComputer(cfg, model, tok, planted, greedy=True, seed=0),
                         split_rows(planted, "val", "sample:5", 0))
    assert train_c.n_samples == train_o.n_samples == 2
    a = train_head(cfg, train_c, val_c, seed=3)
    b = train_head(cfg, train_o, val_o, seed=3)
    assert [r.train_reward for r in a.history[1:]] == [r.train_reward for r in b.history[1:]]
    assert [r.val_ndcg10 for r in a.history] == [r.val_ndcg10 for r in b.history]
    pa, pb = a.head.state_dict(), b.head.state_dict()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in pa.items() if k.endswith("4.weight"))
    c = train_head(cfg, train_c, val_c, seed=4)  # another seed: another head
    assert any(not torch.equal(pa[k], c.head.state_dict()[k]) for k in pa)


@pytest.fixture(scope="module")
def no_cot_states(planted, tiny, tmp_path_factory):
    return _cached(_cfg(), planted, tiny, tmp_path_factory.mktemp("no_cot_states"))


@pytest.mark.parametrize("objective", ["listwise-ce", "reinforce"])
def test_head_learns_the_planted_signal_and_keeps_its_best_epoch(planted, no_cot_states, objective):
    from r2bench.eval.metrics import random_expectation
    from r2bench.r2rank.head_training import ranking_ndcg10, train_head

    cfg = _cfg(objective=objective, epochs=40, patience=6)
    train, val = no_cot_states
    res = train_head(cfg, train, val, seed=0)
    hist = res.history
    assert hist[0].epoch == 0 and hist[0].val_ndcg10 == pytest.approx(random_expectation("ndcg@10", planted.k))
    assert res.best_val_ndcg10 == max(r.val_ndcg10 for r in hist)
    assert hist[res.best_epoch].val_ndcg10 == res.best_val_ndcg10
    assert ranking_ndcg10(res.head, val) == pytest.approx(res.best_val_ndcg10)  # the kept head is the best one
    if res.stopped_early:
        assert res.epochs_run - res.best_epoch == cfg.patience
    assert res.best_val_ndcg10 >= hist[0].val_ndcg10 + 0.15, [round(r.val_ndcg10, 3) for r in hist]
    if objective == "reinforce":
        assert np.mean([r.train_reward for r in hist[-3:]]) > hist[1].train_reward


def test_cli_head_then_run_with_the_head(planted, tiny_dir, tmp_path):
    from r2bench.cli import main
    from r2bench.pipeline import run_method

    out = tmp_path / "head"
    args = ["r2rank", "head", "--dataset", str(planted.path), "--out", str(out), "--set", f"backbone={tiny_dir}",
            "--set", "no_cot=true", "--set", "epochs=3", "--set", "patience=2", "--set", "eval_instances=8",
            "--set", "train_instances=last-per-user:20", "--set", "head_hidden=16", "--set", "device=cpu",
            "--set", "shard_size=16"]
    assert main(args) == 0
    log = pl.read_csv(out / "log.csv")
    assert log["epoch"].to_list()[:2] == [0, 1] and log["val_ndcg10"].is_finite().all()
    pytest.importorskip("matplotlib")
    from r2bench.r2rank.curves import plot_head_logs

    png = plot_head_logs({"reinforce": out / "log.csv"}, tmp_path / "curves.png", chance=0.3, references={"x": 0.5})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    meta = json.loads((out / "final" / "r2rank_train.json").read_text())
    assert meta["train_instances"] == 20 and meta["eval_instances"] == 8
    assert meta["benchmark_fingerprint"] == planted.fingerprint and meta["objective"] == "reinforce"
    assert len(list((out / "features").glob("train-*/shard-*.safetensors"))) == 2
    assert main(["r2rank", "features", "--dataset", str(planted.path), "--out", str(out),
                 "--set", f"backbone={tiny_dir}", "--set", "no_cot=true", "--set", "eval_instances=8",
                 "--set", "train_instances=last-per-user:20", "--set", "device=cpu", "--set", "shard_size=16"]) == 0
    run = run_method("r2rank", planted, split="test", limit=3, out=tmp_path / "runs",
                     overrides={"backbone": str(tiny_dir), "no_cot": "true", "device": "cpu",
                                "head": str(out / "final" / "head.safetensors")})
    info = json.loads((run / "run.json").read_text())
    assert info["info"]["head"].endswith("head.safetensors")
    assert pl.read_parquet(run / "metrics.parquet")["ndcg@10"].is_finite().all()
