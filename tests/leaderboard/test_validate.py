"""Validation: a pristine board passes; every tampered entry is rejected with its message."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from r2bench.cli import main
from r2bench.leaderboard.validate import check_board, validate_tree
from tests.leaderboard.conftest import read_entry, write_entry


def test_pristine_board_is_valid(lb_root, capsys):
    assert validate_tree(lb_root) == []
    assert main(["leaderboard", "validate", str(lb_root)]) == 0
    assert "ok: 3 entries in 1 board(s) valid" in capsys.readouterr().out


def test_stated_metrics_are_recomputed_not_copied(board_dir, lb_runs):
    from r2bench.runs import load_run

    board, entries, problems = check_board(board_dir)
    assert problems == [] and len(entries) == 3
    for e in entries:
        mine = load_run(lb_runs[e.raw["run"]["method"]]).metrics.sort("instance_id")
        assert mine["instance_id"].to_list() == board.instance_ids.tolist()
        for m in ("ndcg@1", "ndcg@5", "ndcg@10", "mrr"):
            assert e.metrics[m] == pytest.approx(mine[m].to_numpy(), abs=1e-12)


def t_missing_instance(e):
    for key in ("instance_id", "item_id", "score"):
        e["scores"][key] = e["scores"][key][1:]


def t_extra_candidate(e):
    e["scores"]["item_id"][0].append("not-a-candidate")
    e["scores"]["score"][0].append(0.5)


def t_swapped_candidate(e):
    e["scores"]["item_id"][0][0] = "not-a-candidate"


def t_duplicate_candidate(e):
    e["scores"]["item_id"][0][1] = e["scores"]["item_id"][0][0]


def t_nan(e):
    e["scores"]["score"][0][3] = math.nan


def t_null_score(e):
    e["scores"]["score"][1][0] = None


def t_extra_instance(e):
    for key, val in (("instance_id", 10**9), ("item_id", e["scores"]["item_id"][0]), ("score", e["scores"]["score"][0])):
        e["scores"][key].append(val)


def t_wrong_fingerprint(e):
    e["benchmark"]["fingerprint"] = "0" * 64


def t_wrong_split(e):
    e["benchmark"]["split"] = "val"


def t_edited_metric(e):
    e["stated_metrics"]["ndcg@10"] += 0.05


def t_missing_metric(e):
    del e["stated_metrics"]["ndcg@5"]


def t_schema(e):
    e["schema_version"] = "r2bench.leaderboard.entry/0"


def t_missing_field(e):
    del e["method_card"]


def t_limited_run(e):
    e["run"]["limit"] = 3


def t_hostile_name_path(e):
    e["method_card"]["name"] = "../../etc"


def t_hostile_name_script(e):
    e["method_card"]["name"] = "<script>alert(1)</script>"


def t_hostile_name_md(e):
    e["method_card"]["name"] = "| [x](javascript:alert(1))"


def t_hostile_url(e):
    e["method_card"]["url"] = "javascript:alert(1)"


def t_hostile_slug(e):
    e["slug"] = "../../etc"


def t_newline_in_field(e):
    e["method_card"]["backbone"] = "x\n| injected | row |"


def t_unknown_card_field(e):
    e["method_card"]["onclick"] = "alert(1)"


def t_negative_cost(e):
    e["cost"]["cost_per_1k"] = -1


TAMPER = {
    "missing instance": (t_missing_instance, "test instance(s) missing"),
    "extra candidate": (t_extra_candidate, "without exactly 20 candidates"),
    "swapped candidate": (t_swapped_candidate, "candidate set differs from the benchmark's"),
    "duplicate candidate": (t_duplicate_candidate, "duplicate candidates in instance(s)"),
    "NaN": (t_nan, "non-finite or non-numeric score"),
    "null score": (t_null_score, "non-finite or non-numeric score"),
    "extra instance": (t_extra_instance, "not in the board's test split: 1000000000"),
    "wrong fingerprint": (t_wrong_fingerprint, "does not match the board's canonical"),
    "wrong split": (t_wrong_split, "entry is for the 'val' split"),
    "edited metrics": (t_edited_metric, "stated ndcg@10 = "),
    "missing metric": (t_missing_metric, "stated_metrics: missing 'ndcg@5'"),
    "schema version": (t_schema, "schema_version 'r2bench.leaderboard.entry/0'"),
    "missing field": (t_missing_field, "missing required field 'method_card'"),
    "limited run": (t_limited_run, "limited to 3 instances"),
    "name ../../etc": (t_hostile_name_path, "method_card.name '../../etc' must start with a letter or digit"),
    "name <script>": (t_hostile_name_script, "method_card.name '<script>alert(1)</script>' must start"),
    "name markdown link": (t_hostile_name_md, "method_card.name '| [x](javascript:alert(1))' must start"),
    "javascript url": (t_hostile_url, "is not an absolute http(s) URL"),
    "slug traversal": (t_hostile_slug, "slug '../../etc' is not a safe slug"),
    "newline in field": (t_newline_in_field, "method_card.backbone contains control characters or line breaks"),
    "unknown card field": (t_unknown_card_field, "method_card: unknown field 'onclick'"),
    "negative cost": (t_negative_cost, "cost.cost_per_1k = -1 is not a non-negative number"),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_tampered_entry_rejected(case, board_dir, capsys):
    tamper, message = TAMPER[case]
    path = board_dir / "entries" / "popularity.json"
    entry = read_entry(path)
    tamper(entry)
    write_entry(path, entry)
    problems = validate_tree(board_dir.parent)
    assert any(message in line for line in problems), problems
    assert all(line.startswith(str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path))
               for line in problems), problems
    assert all("\n" not in line for line in problems)
    # the CLI (what CI runs) fails with one line per problem on stderr
    assert main(["leaderboard", "validate", str(board_dir.parent)]) == 1
    err = capsys.readouterr().err
    assert message in err and f"{len(problems)} problem(s)" in err


def test_edited_metric_names_metric_stated_and_recomputed(board_dir):
    path = board_dir / "entries" / "random.json"
    entry = read_entry(path)
    true = entry["stated_metrics"]["ndcg@1"]
    entry["stated_metrics"]["ndcg@1"] = true + 0.25
    write_entry(path, entry)
    (line,) = validate_tree(board_dir)
    assert f"stated ndcg@1 = {true + 0.25:.6f} but recomputed {true:.6f}" in line


def test_small_rounding_in_stated_metrics_is_tolerated(board_dir):
    path = board_dir / "entries" / "random.json"
    entry = read_entry(path)
    entry["stated_metrics"]["ndcg@10"] = round(entry["stated_metrics"]["ndcg@10"], 5)
    write_entry(path, entry)
    assert validate_tree(board_dir) == []


def test_invalid_json_is_one_line(board_dir):
    (board_dir / "entries" / "random.json").write_text("{not json")
    (line,) = validate_tree(board_dir)
    assert "random.json: not valid JSON" in line


def test_copied_scores_under_another_name_are_a_duplicate(board_dir):
    src = read_entry(board_dir / "entries" / "popularity.json")
    src["method_card"]["name"] = "Totally New Method"
    src["slug"] = "totally-new-method"
    write_entry(board_dir / "entries" / "totally-new-method.json", src)
    problems = validate_tree(board_dir)
    assert any("totally-new-method.json: identical scores to popularity.json" in p for p in problems), problems


def test_duplicate_name_differing_in_case(board_dir):
    src = read_entry(board_dir / "entries" / "random.json")
    src["method_card"]["name"] = "RANDOM"
    src["slug"] = "random-copy"
    src["scores"]["score"][0][0] += 1e-3  # different scores, same name
    write_entry(board_dir / "entries" / "random-copy.json", src)
    problems = validate_tree(board_dir)
    # whichever file comes second (by submission date, then file name) is refused
    assert any("random.json: duplicate name 'Random', already used by random-copy.json" in p for p in problems), problems
    assert any("slug 'random-copy' is not the slug of the name 'RANDOM'" in p for p in problems), problems


def test_stray_file_in_entries(board_dir):
    (board_dir / "entries" / "notes.txt").write_text("hi")
    (line,) = validate_tree(board_dir)
    assert "notes.txt: unexpected file in entries/" in line


def test_placeholder_board_with_entries_rejected(board_dir):
    board = json.loads((board_dir / "board.json").read_text())
    board["fingerprint"] = None
    board["instances"] = None
    (board_dir / "board.json").write_text(json.dumps(board))
    problems = validate_tree(board_dir)
    assert len(problems) == 3 and all("no canonical benchmark yet" in p for p in problems)


def test_placeholder_board_without_entries_is_valid(tmp_path):
    from r2bench.leaderboard.board import placeholder_board_dict, write_board

    write_board(tmp_path / "amazon-video-games", placeholder_board_dict("amazon-video-games"))
    assert validate_tree(tmp_path) == []


def test_corrupt_board_json(board_dir):
    (board_dir / "board.json").write_text("[]")
    (line,) = validate_tree(board_dir)
    assert "board.json: expected a JSON object" in line


def test_repository_boards_are_valid():
    """What CI runs: the boards committed in this repository validate."""
    root = Path(__file__).resolve().parents[2] / "leaderboards"
    if not any(root.glob("*/board.json")):
        pytest.skip("no boards in the repository yet")
    assert validate_tree(root) == []
    from r2bench.leaderboard.publish import render_all

    assert render_all(root, check=True) == []  # the committed README.md files match their entries


def test_validate_missing_dir_is_a_user_error(tmp_path, capsys):
    assert main(["leaderboard", "validate", str(tmp_path / "nope")]) == 2
    assert "no such leaderboards folder" in capsys.readouterr().err


def test_board_copy_is_independent(pristine_root, lb_root):
    shutil.rmtree(lb_root)
    assert validate_tree(pristine_root) == []


@pytest.mark.parametrize("field,value,message", [
    ("dataset", "../other", "must be a plain [a-z0-9-] name equal to the folder name"),
    ("fingerprint", "`](javascript:x)", "is not a hex digest"),
    ("split", "val", "boards rank the 'test' split only"),
    ("schema_version", "x/0", "schema_version 'x/0'"),
])
def test_tampered_board_rejected(board_dir, field, value, message):
    board = json.loads((board_dir / "board.json").read_text())
    board[field] = value
    (board_dir / "board.json").write_text(json.dumps(board))
    (line,) = validate_tree(board_dir)
    assert message in line and "board.json" in line


def test_first_submission_fixes_a_placeholder_board(lb_runs, tmp_path):
    from r2bench.leaderboard.board import load_board, placeholder_board_dict, write_board
    from r2bench.leaderboard.submit import MethodCard, submit_run

    root = tmp_path / "leaderboards"
    write_board(root / "synthetic", placeholder_board_dict("synthetic"))
    assert load_board(root / "synthetic").placeholder
    submit_run(lb_runs["popularity"], MethodCard(name="Pop"), root=root)
    board = load_board(root / "synthetic")
    assert not board.placeholder and board.n_instances > 0
    assert validate_tree(root) == []


def test_entries_outside_a_board_are_flagged(lb_root):
    (lb_root / "new-dataset" / "entries").mkdir(parents=True)
    (lb_root / "new-dataset" / "entries" / "x.json").write_text("{}")
    (line,) = validate_tree(lb_root)
    assert "new-dataset: a folder without board.json" in line


def test_problem_lines_stay_single_lines(board_dir):
    (board_dir / "entries" / "we\nird.json").write_text("{}")
    problems = validate_tree(board_dir)
    assert problems and all("\n" not in p for p in problems)


def test_repository_movielens_board_is_reproducible_from_source():
    """The canonical ml-100k board is exactly what `r2bench prepare movielens-100k` builds today.

    If this fails after a change to the benchmark construction, the fingerprint moved:
    the board and its entries must be re-seeded with runs on the new benchmark.
    """
    folder = Path(__file__).resolve().parents[2] / "leaderboards" / "movielens-100k"
    if not (folder / "board.json").is_file():
        pytest.skip("no movielens-100k board in the repository")
    pytest.importorskip("recbole")
    from r2bench.data.prepare import prepare
    from r2bench.leaderboard.board import board_dict_from_benchmark

    board = json.loads((folder / "board.json").read_text())
    bench = prepare("movielens-100k")  # offline: the copy inside the recbole package
    assert bench.fingerprint == board["fingerprint"], (
        f"movielens-100k now builds as {bench.fingerprint[:12]} but the board ranks {board['fingerprint'][:12]}")
    assert board_dict_from_benchmark(bench)["instances"] == board["instances"]
