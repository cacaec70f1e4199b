"""RecBole baselines (SASRec, BERT4Rec, LightGCN): short real trainings on tiny benchmarks."""

from __future__ import annotations

import dataclasses
import os
import random
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("recbole")

import torch  # noqa: E402

from baselines import recbole_compat as compat  # noqa: E402
from baselines import recbole_models as rm  # noqa: E402
from r2bench.config import build_config  # noqa: E402
from r2bench.eval.metrics import per_instance_metrics  # noqa: E402

METHODS = {"sasrec": rm.SASRecMethod, "bert4rec": rm.BERT4RecMethod, "lightgcn": rm.LightGCNMethod}
TINY = {"epochs": 1, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "train_batch_size": 256, "threads": 1}


def _tiny(cls, **over):
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    values = {k: v for k, v in TINY.items() if k in fields}
    if "embedding_size" in fields:
        values["embedding_size"] = 16
    values.update(over)
    return cls(build_config(cls.Config, values), seed=0)


@pytest.fixture(scope="module")
def seq_benchmark(tmp_path_factory):
    """Users walk items i, i+1, i+2...: the next item is the last history item + 1."""
    from r2bench.data.benchmark import load_benchmark
    from r2bench.data.synthetic import make_synthetic_benchmark

    out = tmp_path_factory.mktemp("seq_bench")
    return load_benchmark(make_synthetic_benchmark(out, n_users=150, n_items=60, seed=1, pattern="sequential"))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_yaml_is_the_single_source_of_defaults(name):
    cls = METHODS[name]
    yaml_values = rm.load_yaml_defaults(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert set(yaml_values) == fields, f"{name}.yaml and {cls.Config.__name__} list different keys"
    assert build_config(cls.Config, config_file=rm.CONFIG_DIR / f"{name}.yaml") == cls.Config()
    if "max_seq_length" in fields:
        assert cls.Config().max_seq_length == 20


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_epoch_gives_valid_scores_and_contains_side_effects(name, tiny_benchmark, tmp_path, monkeypatch):
    """Trains one short epoch; finite [n, 20] scores; no litter, argv, env or RNG leaks."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["r2bench", "run", "--epochs=99", "--learning_rate=0.5"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state().clone())
    threads, anomaly = torch.get_num_threads(), torch.is_anomaly_enabled()
    alias_names = set(compat.NUMPY_ALIASES) | set(compat.NUMPY_ASSIGNED)
    numpy_names = {n: np.__dict__.get(n) for n in alias_names}

    method = _tiny(METHODS[name])
    method.fit(tiny_benchmark)
    test = tiny_benchmark.split("test")
    scores = method.score(tiny_benchmark, test)

    assert scores.shape == (test.height, 20)
    assert np.isfinite(scores).all()
    assert list(tmp_path.iterdir()) == [], "RecBole wrote into the working directory"
    assert sys.argv == ["r2bench", "run", "--epochs=99", "--learning_rate=0.5"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    assert random.getstate() == states[0]
    np_now = np.random.get_state()
    assert np_now[0] == states[1][0] and np.array_equal(np_now[1], states[1][1]) and np_now[2:] == states[1][2:]
    assert torch.equal(torch.get_rng_state(), states[2])
    assert torch.get_num_threads() == threads and torch.is_anomaly_enabled() == anomaly
    assert {n: np.__dict__.get(n) for n in alias_names} == numpy_names, "numpy aliases leaked"

    info = method.info()
    rc = info["recbole_config"]
    assert rc["epochs"] == 1 and rc["learning_rate"] == pytest.approx(0.001 if name != "lightgcn" else 0.002)
    assert info["recbole_version"] == "1.2.1"
    assert info["selected_epoch"] == 1 and len(info["val_ndcg@10_per_epoch"]) == 1
    assert info["scoring"]["rows"] == test.height
    assert info["scoring"]["candidates"] == 20 * test.height
    import json

    json.dumps(info, allow_nan=False)  # plain JSON-safe values
    tables = method.artifacts()
    assert tables["epochs"].height == 1 and tables["recbole_log"].height > 0


def test_sasrec_learns_planted_sequence(seq_benchmark):
    """Histories reach the model in order: SASRec finds 'next = last + 1' (chance HR@1 = 0.05)."""
    method = _tiny(rm.SASRecMethod, epochs=12, patience=12, hidden_size=32, inner_size=64, n_layers=2,
                   learning_rate=0.005, train_batch_size=128)
    method.fit(seq_benchmark)
    test = seq_benchmark.split("test")
    scores = method.score(seq_benchmark, test)
    hr1 = per_instance_metrics(scores, test["target_index"].to_numpy(), ("hr@1",))["hr@1"].mean()
    assert hr1 > 0.5, f"HR@1 {hr1:.3f}"
    info = method.info()
    assert info["train_examples_match_instances"], "training examples differ from the benchmark's train instances"


def test_reversed_history_breaks_the_sequence(seq_benchmark):
    """Control for the planted test: the same model scores worse when histories are reversed."""
    import polars as pl

    method = _tiny(rm.SASRecMethod, epochs=8, patience=8, hidden_size=32, inner_size=64, learning_rate=0.005,
                   train_batch_size=128)
    method.fit(seq_benchmark)
    test = seq_benchmark.split("test")
    rev = test.with_columns(pl.col("history").list.reverse())
    t = test["target_index"].to_numpy()
    fwd = per_instance_metrics(method.score(seq_benchmark, test), t, ("hr@1",))["hr@1"].mean()
    bwd = per_instance_metrics(method.score(seq_benchmark, rev), t, ("hr@1",))["hr@1"].mean()
    assert fwd > bwd + 0.3


def test_cold_candidates_rank_last_and_are_counted(tiny_benchmark):
    import polars as pl

    method = _tiny(rm.SASRecMethod)
    method.fit(tiny_benchmark)
    test = tiny_benchmark.split("test").head(3)
    cold = test.with_columns(
        pl.col("candidates").list.eval(pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("never-seen-") + pl.element())
                                       .otherwise(pl.element()))
    )
    scores = method.score(tiny_benchmark, cold)
    assert np.isfinite(scores).all()
    assert (scores[:, :2].max(axis=1) < scores[:, 2:].min(axis=1)).all()
    assert (scores[:, 0] == scores[:, 1]).all()
    assert method.info()["scoring"]["unknown_candidates"] == 6


def test_bert4rec_sees_the_whole_history():
    """[0] + history with MAX_ITEM_LIST_LENGTH = 21: RecBole's reconstruct drops only the pad."""
    cls = rm.BERT4RecMethod
    m = cls(cls.Config(), seed=0)
    assert m.seq_len() == 21 and m.lead_pad == 1
    seq = torch.tensor([[0] + list(range(1, 21))])
    with compat.recbole_session():
        from recbole.model.sequential_recommender.bert4rec import BERT4Rec

        stub = type("Stub", (), {"mask_token": 99})()  # RecBole's own method on a stand-in model
        out = BERT4Rec.reconstruct_test_data(stub, seq, torch.tensor([21]))
    assert out.tolist() == [list(range(1, 21)) + [99]]


def test_lightgcn_folds_in_histories_never_targets(tiny_benchmark):
    import polars as pl

    method = _tiny(rm.LightGCNMethod)
    rows = method.training_rows(tiny_benchmark)
    held = tiny_benchmark.instances.filter(pl.col("split") != "train")
    pairs = set(zip(rows["user_id"].to_list(), rows["item_id"].to_list()))
    assert not any((u, t) in pairs for u, t in zip(held["user_id"].to_list(), held["target"].to_list()))
    for u, hist in zip(held["user_id"].to_list(), held["history"].to_list()):
        assert all((u, h) in pairs for h in hist)


def test_same_seed_same_scores_other_seed_differs(tiny_benchmark):
    test = tiny_benchmark.split("test")
    a = _tiny(rm.SASRecMethod)
    a.fit(tiny_benchmark)
    b = _tiny(rm.SASRecMethod)
    b.fit(tiny_benchmark)
    c = rm.SASRecMethod(a.config, seed=1)
    c.fit(tiny_benchmark)
    sa, sb, sc = (m.score(tiny_benchmark, test) for m in (a, b, c))
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(sa, sc)


def test_recbole_log_lines_stay_out_of_the_callers_handlers():
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    capture = compat.LogCapture()
    try:
        with compat.capture_root_log(capture):
            logging.getLogger().info("from recbole")  # RecBole logs through the root logger
            logging.getLogger("r2bench.other").info("from elsewhere")
        logging.getLogger().info("after the session")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert [r.getMessage() for r in records] == ["from elsewhere", "after the session"]
    assert any("from recbole" in line for line in capture.lines)
    assert not handler.filters
