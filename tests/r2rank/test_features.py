"""Frozen-feature cache: keyed, resumable after an interruption, and the states `r2bench run` reads;
training-instance selection."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from r2bench.errors import R2BenchError  # noqa: E402
from r2bench.r2rank.train_config import HeadTrainConfig  # noqa: E402


# fixtures `planted` (a benchmark with a planted signal) and `tiny` (a frozen tiny LM): conftest.py


def _cfg(**kw):
    base = {"no_cot": False, "max_reasoning_tokens": 3, "samples": 2, "shard_size": 4, "train_instances": "sample:14",
            "eval_instances": 6, "device": "cpu", "dtype": "float32"}
    return HeadTrainConfig(**{**base, **kw})


def _build(cfg, planted, tiny, root, **kw):
    from r2bench.r2rank.features import build_features

    model, tok = tiny
    return build_features(cfg, planted, root, seed=0, model=model, tokenizer=tok, digests=("tiny", None), **kw)


# ------------------------------------------------------------------ instance selection

def test_select_instances_specs(planted):
    from r2bench.r2rank.instances import select_instances
    from r2bench.r2rank.rl import train_rows

    rows = planted.split("train").to_dicts()
    users = {r["user_id"] for r in rows}
    assert len(rows) > len(users)  # several instances per user, so the choice matters
    last = select_instances(rows, "last-per-user")
    assert len(last) == len(users) and len({r["user_id"] for r in last}) == len(users)
    for r in last:
        assert r["target_timestamp"] == max(x["target_timestamp"] for x in rows if x["user_id"] == r["user_id"])
    ids = [r["instance_id"] for r in last]
    assert ids == sorted(ids)
    a, b = select_instances(rows, "sample:10", seed=1), select_instances(rows, "sample:10", seed=1)
    assert [r["instance_id"] for r in a] == [r["instance_id"] for r in b] and len(a) == 10
    assert [r["instance_id"] for r in a] != [r["instance_id"] for r in select_instances(rows, "sample:10", seed=2)]
    sub = select_instances(rows, "last-per-user:7", seed=0)
    assert len(sub) == 7 and {r["instance_id"] for r in sub} <= set(ids)
    assert len(select_instances(rows, "all")) == len(rows) == len(select_instances(rows, f"sample:{10 * len(rows)}"))
    assert [r["instance_id"] for r in train_rows(planted, "last-per-user", 0)] == ids  # what RL steps draw from
    for bad in ("first", "sample", "sample:x", "sample:0", "all:3"):
        with pytest.raises(R2BenchError, match="train_instances"):
            select_instances(rows, bad)


# ------------------------------------------------------------------ the cache

def test_interrupted_pass_resumes_with_only_the_missing_shards(planted, tiny, tmp_path):
    from r2bench.r2rank.features import load_split

    cfg = _cfg()
    ref = {k: load_split(v) for k, v in _build(cfg, planted, tiny, tmp_path / "ref").items()}
    assert ref["train"].hidden.shape[:3] == (14, 2, planted.k) and ref["val"].hidden.shape[:2] == (6, 1)

    class Killed(Exception):
        pass

    seen: list[int] = []

    def die_in_third_shard(iid: int) -> None:
        seen.append(iid)
        if len(seen) == 10:  # shards 0 and 1 (8 instances) are written, shard 2 is half done
            raise Killed

    with pytest.raises(Killed):
        _build(cfg, planted, tiny, tmp_path / "run", on_instance=die_in_third_shard)
    folder = next((tmp_path / "run").glob("train-*"))
    assert sorted(p.name for p in folder.iterdir()) == ["key.json", "shard-00000.safetensors", "shard-00001.safetensors"]
    with pytest.raises(R2BenchError, match="incomplete feature cache, missing shard-00002"):
        load_split(folder)

    again: list[int] = []
    out = _build(cfg, planted, tiny, tmp_path / "run", on_instance=again.append)
    assert len(again) == 14 - 8 + 6  # the missing train shards, then the whole val split
    assert again[:6] == [int(i) for i in ref["train"].instance_ids[8:]]
    for split, fs in ref.items():
        got = load_split(out[split])
        assert got.folder.name == fs.folder.name  # same key
        for name in ("hidden", "margin", "finished", "n_tokens", "instance_ids", "target"):
            assert torch.equal(getattr(got, name), getattr(fs, name)), (split, name)
    assert len(_build(cfg, planted, tiny, tmp_path / "run", on_instance=again.append)) == 2 and len(again) == 12


def test_key_names_what_the_states_depend_on(planted, tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    from r2bench.r2rank.features import load_split

    a = _build(_cfg(), planted, tiny, tmp_path)["train"]
    b = _build(_cfg(max_reasoning_tokens=4), planted, tiny, tmp_path)["train"]
    c = _build(_cfg(no_cot=True), planted, tiny, tmp_path)["train"]
    assert len({a, b, c}) == 3
    key = load_split(a).key
    assert key["benchmark"]["fingerprint"] == planted.fingerprint and key["generation"]["samples"] == 2
    assert load_split(c).n_samples == 1 and load_split(c).key["generation"]["max_reasoning_tokens"] == 0
    # a shard written under another key is recomputed, not trusted
    shard = a / "shard-00001.safetensors"
    good = load_file(str(shard))
    save_file({k: torch.zeros_like(v) for k, v in good.items()}, str(shard), metadata={"format": "r2bench.features/1",
                                                                                    "key": "0" * 16})
    seen: list[int] = []
    _build(_cfg(), planted, tiny, tmp_path, on_instance=seen.append, splits=["train"])
    assert len(seen) == 4 and torch.equal(load_file(str(shard))["hidden"], good["hidden"])


def test_cached_states_score_like_r2bench_run(planted, tiny, tmp_path):
    """A head on the cached held-out states gives the scores `r2bench run --method r2rank` gives."""
    import polars as pl

    from r2bench.r2rank.features import load_split
    from r2bench.r2rank.method import R2RankConfig, R2RankMethod
    from r2bench.r2rank.rl import fresh_head

    model, tok = tiny
    for no_cot in (False, True):
        cfg = _cfg(no_cot=no_cot, max_reasoning_tokens=4)
        val = load_split(_build(cfg, planted, tiny, tmp_path, splits=["val"])["val"])
        head = fresh_head(model.config.hidden_size, 16)
        with torch.no_grad():
            head.net[-1].weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
            cached = head(val.hidden[:, 0]).double().numpy()
        rows = planted.split("val").filter(
            pl.col("instance_id").is_in(val.instance_ids.tolist()))
        m = R2RankMethod(R2RankConfig(max_reasoning_tokens=4, no_cot=no_cot))
        m.set_model(model, tok, head)
        scores = m.score(planted, rows)
        assert np.allclose(scores, cached, atol=1e-5), no_cot
        margins = np.array([r["margin"] for r in m.artifacts()["rationales"].to_dicts()])
        assert np.allclose(margins[-val.n * planted.k:], val.margin[:, 0].reshape(-1).numpy(), atol=1e-4)
