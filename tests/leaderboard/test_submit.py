"""Submission: run -> entry, and everything it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r2bench.cli import main
from r2bench.errors import R2BenchError
from r2bench.leaderboard import schema
from r2bench.leaderboard.submit import MethodCard, cost_per_1k, submit_run
from r2bench.leaderboard.validate import validate_tree
from tests.leaderboard.conftest import read_entry


def test_entry_contents(board_dir, lb_runs):
    entry = read_entry(board_dir / "entries" / "popularity.json")
    run_meta = json.loads((lb_runs["popularity"] / "run.json").read_text())
    assert entry["schema_version"] == schema.ENTRY_SCHEMA
    assert entry["slug"] == "popularity"
    assert entry["method_card"] == {"name": "Popularity", "description": "the popularity sanity baseline",
                                    "url": "https://example.org/r2bench", "params": "0", "used_val_split": False}
    assert entry["benchmark"]["fingerprint"] == run_meta["benchmark_fingerprint"]
    assert entry["benchmark"]["split"] == "test"
    assert entry["run"]["command"] == run_meta["command"] and entry["run"]["run_id"] == run_meta["run_id"]
    assert "benchmark_path" not in entry["run"]  # no local paths in the repository
    assert entry["submit_command"].startswith("r2bench submit ")
    assert entry["scores"]["format"] == schema.INLINE_FORMAT
    assert len(entry["scores"]["instance_id"]) == entry["benchmark"]["n_instances"]
    assert all(len(row) == 20 for row in entry["scores"]["item_id"])
    board = json.loads((board_dir / "board.json").read_text())
    assert board["fingerprint"] == run_meta["benchmark_fingerprint"]
    assert len(board["instances"]["target"]) == entry["benchmark"]["n_instances"]


def test_inline_scores_roundtrip_exactly(board_dir, lb_runs):
    import polars as pl

    entry = read_entry(board_dir / "entries" / "random.json")
    got = pl.DataFrame({"instance_id": entry["scores"]["instance_id"], "item_id": entry["scores"]["item_id"],
                        "score": entry["scores"]["score"]}).explode("item_id", "score")
    want = pl.read_parquet(lb_runs["random"] / "scores.parquet")
    assert got.sort("instance_id", "item_id").equals(want.sort("instance_id", "item_id"))


def test_same_name_refused_unless_replace(lb_root, lb_runs):
    with pytest.raises(R2BenchError, match="already exists .*--replace"):
        submit_run(lb_runs["random"], MethodCard(name="random"), root=lb_root, render=False)
    path = submit_run(lb_runs["random"], MethodCard(name="Random", description="again"), root=lb_root,
                      replace=True, render=False)
    assert read_entry(path)["method_card"]["description"] == "again"
    assert validate_tree(lb_root) == []


def _files(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_what_validation_would_refuse_is_refused_before_writing(lb_root, lb_runs, capsys):
    before = _files(lb_root)
    # identical scores to an existing entry under a new name: a duplicate submission
    assert main(["submit", str(lb_runs["random"]), "--name", "My brand new method", "--root", str(lb_root)]) == 2
    err = capsys.readouterr().err
    assert "would not validate (nothing written)" in err and "identical scores to random.json" in err
    # the same scores under the same method's --replace of another entry: still a duplicate of random.json
    with pytest.raises(R2BenchError, match="identical scores to random.json"):
        submit_run(lb_runs["random"], MethodCard(name="Popularity"), root=lb_root, replace=True, render=False)
    assert _files(lb_root) == before  # no entry, no board, no rendered page changed
    # what submit lets through, validate accepts
    (lb_root / "synthetic" / "entries" / "random.json").unlink()
    submit_run(lb_runs["random"], MethodCard(name="My brand new method"), root=lb_root, render=False)
    assert validate_tree(lb_root) == []


def test_a_new_board_is_only_created_for_a_valid_entry(lb_runs, tmp_path):
    root = tmp_path / "lb"
    with pytest.raises(R2BenchError, match="method_card.url"):
        submit_run(lb_runs["random"], MethodCard(name="Random", url="ftp://x"), root=root, render=False)
    assert not root.exists()


def test_commands_are_recorded_and_shown_as_typed(lb_root, lb_runs, capsys):
    (lb_root / "synthetic" / "entries" / "popularity.json").unlink()
    desc = "Counts how often an item was a positive in train users' sequences."
    argv = ["submit", str(lb_runs["popularity"]), "--name", "Pop (again)", "--description", desc,
            "--params", "~0", "--root", str(lb_root)]
    assert main(argv) == 0
    entry = read_entry(lb_root / "synthetic" / "entries" / "pop-again.json")
    cmd = entry["submit_command"]
    assert f'--description "{desc}"' in cmd and "--name 'Pop (again)'" in cmd and "--params '~0'" in cmd
    import shlex

    assert shlex.split(cmd) == ["r2bench", *argv]  # and it pastes back into a shell as the same words
    readme = (lb_root / "synthetic" / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if "Submitted with" in ln and "Pop" in ln)
    assert "'\"'\"'" not in line and "train users' sequences" in line
    # entries recorded with shell quoting render readably too
    from r2bench.provenance import readable_command

    assert readable_command("r2bench submit x --description 'users'\"'\"' sequences.'") == \
        'r2bench submit x --description "users\' sequences."'
    # a run made from Python records a library call, not a shell command: shown as it is
    call = "r2bench.pipeline.run_method('random', 'movielens-100k', split='test', limit=None)"
    assert readable_command(call) == call


@pytest.mark.parametrize("name", ["../../etc", "<script>alert(1)</script>", "| [x](javascript:alert(1))", "a\nb", ""])
def test_hostile_names_refused_and_nothing_written(name, lb_root, lb_runs, tmp_path, capsys):
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["submit", str(lb_runs["random"]), "--name", name, "--root", str(lb_root)]) == 2
    err = capsys.readouterr().err
    assert "r2bench submit: error: --name" in err and err.count("\n") == 1
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_hostile_url_refused(lb_root, lb_runs):
    with pytest.raises(R2BenchError, match="method_card.url .*not an absolute http"):
        submit_run(lb_runs["random"], MethodCard(name="Evil", url="javascript:alert(1)"), root=lb_root, render=False)
    assert not (lb_root / "synthetic" / "entries" / "evil.json").exists()


def test_val_split_and_limited_runs_refused(tiny_benchmark_path, tmp_path):
    from r2bench.pipeline import run_method

    val = run_method("popularity", tiny_benchmark_path, split="val", out=tmp_path / "runs")
    with pytest.raises(R2BenchError, match="on the 'val' split; only 'test'-split runs"):
        submit_run(val, MethodCard(name="Pop"), root=tmp_path / "lb", render=False)
    limited = run_method("popularity", tiny_benchmark_path, limit=2, out=tmp_path / "runs")
    with pytest.raises(R2BenchError, match="scored only 2 instances"):
        submit_run(limited, MethodCard(name="Pop"), root=tmp_path / "lb", render=False)
    assert not (tmp_path / "lb").exists()


def test_run_on_another_benchmark_refused(lb_root, tmp_path):
    from r2bench.data.synthetic import make_synthetic_benchmark
    from r2bench.pipeline import run_method

    other = make_synthetic_benchmark(tmp_path / "other", n_users=40, n_items=50, seed=7)  # same dataset name
    run = run_method("popularity", other, out=tmp_path / "runs")
    with pytest.raises(R2BenchError, match="but the board .* ranks the canonical benchmark"):
        submit_run(run, MethodCard(name="Pop elsewhere"), root=lb_root, render=False)


def test_large_entries_use_a_sidecar_parquet(lb_root, lb_runs, monkeypatch):
    monkeypatch.setattr(schema, "INLINE_MAX_SCORES", 10)
    with pytest.raises(R2BenchError, match="identical scores to item-cooccurrence.json"):
        submit_run(lb_runs["item-cooccurrence"], MethodCard(name="Cooc big"), root=lb_root, render=False)
    assert not (lb_root / "synthetic" / "entries" / "cooc-big.scores.parquet").exists()
    (lb_root / "synthetic" / "entries" / "item-cooccurrence.json").unlink()
    path = submit_run(lb_runs["item-cooccurrence"], MethodCard(name="Cooc big"), root=lb_root, render=False)
    entry = read_entry(path)
    side = path.parent / "cooc-big.scores.parquet"
    assert entry["scores"]["format"] == schema.PARQUET_FORMAT and entry["scores"]["file"] == side.name
    assert side.is_file()
    assert validate_tree(lb_root) == []
    import polars as pl

    df = pl.read_parquet(side)
    df.with_columns(pl.col("score") * 2).write_parquet(side)
    (line,) = validate_tree(lb_root)
    assert "does not match the sha256 recorded in the entry" in line
    side.unlink()
    (line,) = validate_tree(lb_root)
    assert "scores file cooc-big.scores.parquet is missing" in line


def test_cost_per_1k_from_info():
    llm = {"llm": {"model": "m", "prompt_tokens": 1000, "completion_tokens": 500, "cached_prompt_tokens": 400,
                   "cached_completion_tokens": 100, "cost": 0.01, "cost_without_cache": 0.02}}
    assert cost_per_1k(llm, 10) == {"tokens_per_1k": 200000.0, "cost_per_1k": 2.0}
    r2rank = {"candidates_scored": 200, "reasoning_tokens": 6400, "mean_prompt_tokens": 300.0}
    assert cost_per_1k(r2rank, 10)["tokens_per_1k"] == (300 * 200 + 6400) * 100
    assert cost_per_1k({"usage": {"total_tokens": 50}}, 100)["tokens_per_1k"] == 500.0
    assert cost_per_1k({}, 100) == {"tokens_per_1k": None, "cost_per_1k": None}


def test_cli_submit_records_command_and_renders(lb_root, lb_runs, capsys):
    (lb_root / "synthetic" / "entries" / "popularity.json").unlink()
    rc = main(["submit", str(lb_runs["popularity"]), "--name", "Pop (CLI)", "--backbone", "none",
               "--training-data", "train split", "--used-val-split", "--root", str(lb_root)])
    assert rc == 0
    path = Path(capsys.readouterr().out.split("wrote ", 1)[1].strip())
    entry = read_entry(path)
    assert path.name == "pop-cli.json" and entry["method_card"]["used_val_split"] is True
    assert "--name 'Pop (CLI)'" in entry["submit_command"]
    board_md = (lb_root / "synthetic" / "README.md").read_text()
    assert "Pop \\(CLI\\)" in board_md and "**Popularity**" not in board_md


def test_cli_init_board_and_placeholder(tiny_benchmark_path, tmp_path, capsys):
    from r2bench.leaderboard.board import load_board

    root = tmp_path / "lb"
    assert main(["leaderboard", "init", str(tiny_benchmark_path), "--root", str(root), "--title", "Tiny"]) == 0
    board = load_board(root / "synthetic")
    assert board.title == "Tiny" and board.n_instances > 0 and not board.placeholder
    assert main(["leaderboard", "init", str(tiny_benchmark_path), "--root", str(root)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["leaderboard", "init", "amazon-video-games", "--placeholder", "--root", str(root)]) == 0
    assert load_board(root / "amazon-video-games").placeholder
    assert main(["leaderboard", "init", "../evil", "--placeholder", "--root", str(root)]) == 2
    assert "not usable as a board folder" in capsys.readouterr().err
    assert main(["leaderboard", "validate", str(root / "synthetic")]) == 0


def test_bulky_info_is_trimmed():
    from r2bench.leaderboard.submit import trim_info

    out = trim_info({"log": "x" * 10_000, "epochs": [1, 2, 3], "tokens": {"prompt_tokens": 5}})
    assert out["epochs"] == [1, 2, 3] and out["tokens"] == {"prompt_tokens": 5}
    assert out["log"].startswith("<omitted from the entry: 10002 characters")
