"""``prepare`` on MovieLens-100K (from the recbole package), the CLI, and data cards."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys

import pytest

from r2bench.cli import main
from r2bench.data.benchmark import FILES, load_benchmark
from r2bench.data.cards import BEGIN, END, fill_card, write_repo_card
from r2bench.data.prepare import prepare
from r2bench.errors import R2BenchError

needs_recbole_files = pytest.mark.skipif(
    importlib.util.find_spec("recbole") is None, reason="the recbole package (which ships ml-100k) is not installed"
)


def _digests(folder):
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in (*FILES, "manifest.json")}


@needs_recbole_files
def test_movielens_subset_is_byte_identical_after_cache_delete(_isolated_home):
    a = prepare("movielens-100k", limit_users=40)
    first = _digests(a.path)
    shutil.rmtree(_isolated_home / "benchmarks")
    b = prepare("movielens-100k", limit_users=40)
    assert a.fingerprint == b.fingerprint
    assert _digests(b.path) == first
    assert b.manifest["stats"]["users"] == 40
    assert b.profile_fields == ["age", "gender", "occupation"]
    assert b.item_text_fields == ["year", "genres"]
    assert b.interactions["timestamp"].min() > 800_000_000_000  # seconds were converted to ms
    assert len(b.manifest["source"]["files"]) == 3 and all(len(f["sha256"]) == 64 for f in b.manifest["source"]["files"])
    c = prepare("movielens-100k", limit_users=40, seed=1)
    assert c.fingerprint != a.fingerprint


@needs_recbole_files
def test_movielens_source_does_not_import_recbole():
    sys.modules.pop("recbole", None)
    from r2bench.data.sources.movielens import MovieLens100K

    data = MovieLens100K("movielens-100k").load()
    assert "recbole" not in sys.modules
    assert data.interactions.height == 100_000
    assert data.items.height == 1682 and data.users.height == 943


@needs_recbole_files
def test_cli_prepare_and_load_by_name(capsys):
    rc = main(["prepare", "movielens-100k", "--limit-users", "25", "--history-len", "5", "--n-candidates", "10"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "fingerprint" in out and "users 25" in out
    b = load_benchmark("movielens-100k")
    assert b.k == 10 and b.manifest["spec"]["history_len"] == 5
    assert max(b.instances["history"].list.len()) == 5


def test_cli_unknown_dataset_suggests(capsys):
    rc = main(["prepare", "movielens-10k"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'movielens-10k'" in err and "did you mean 'movielens-100k'" in err


def test_unknown_construction_parameter():
    with pytest.raises(R2BenchError, match="unknown construction parameter"):
        prepare("movielens-100k", histroy_len=3)


def test_card_fill_and_refresh(tmp_path, monkeypatch, tiny_benchmark):
    monkeypatch.setenv("R2BENCH_CARDS_DIR", str(tmp_path))
    card = tmp_path / "synthetic.md"
    card.write_text(f"# Synthetic\n\nHand-written text.\n\n{BEGIN}\nold\n{END}\n\n## Caveats\n\nkept\n")
    assert write_repo_card("synthetic", tiny_benchmark.manifest) == card
    text = card.read_text()
    assert "Hand-written text." in text and "## Caveats\n\nkept" in text and "old" not in text
    assert "| users | 60 |" in text and "| test | 6 | 6 |" in text and "`history_len`: `20`" in text
    assert write_repo_card("nope", tiny_benchmark.manifest) is None
    # a card without markers gets a statistics section appended
    assert "## Statistics" in fill_card("# x\n", tiny_benchmark.manifest)


def test_card_has_paper_column_for_amazon(tiny_benchmark):
    m = dict(tiny_benchmark.manifest, dataset="amazon-video-games")
    text = fill_card(f"{BEGIN}{END}", m)
    assert "paper (Table 1)" in text and "| users | 60 | 12,417 |" in text


@needs_recbole_files
def test_cli_card_prints_measured_stats(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("R2BENCH_CARDS_DIR", str(tmp_path))
    repo_card = tmp_path / "movielens-100k.md"
    repo_card.write_text(f"# MovieLens\n\n{BEGIN}\n{END}\n")
    assert main(["card", "movielens-100k"]) == 0
    assert "Not prepared yet" in capsys.readouterr().out
    b = prepare("movielens-100k", limit_users=20)
    assert "| users | 20 |" in (b.path / "card.md").read_text()  # the card lives with the benchmark
    assert main(["card", "movielens-100k"]) == 0
    assert "| users | 20 |" in capsys.readouterr().out
    assert main(["card", str(b.path)]) == 0 and "| users | 20 |" in capsys.readouterr().out
    assert repo_card.read_text() == f"# MovieLens\n\n{BEGIN}\n{END}\n"  # prepare only read it
    # the maintainer command writes the committed card, from the canonical (default-spec) benchmark only
    assert main(["card", "movielens-100k", "--write-repo-card"]) == 2
    assert "not built with the default spec (differs in limit_users)" in capsys.readouterr().err
    full = prepare("movielens-100k")
    assert main(["card", "movielens-100k", "--write-repo-card"]) == 0
    assert "| users | 943 |" in repo_card.read_text() and full.fingerprint[:16] in repo_card.read_text()


def test_cli_card_unprepared_amazon_shows_paper_numbers(capsys, monkeypatch):
    monkeypatch.delenv("R2BENCH_CARDS_DIR", raising=False)
    assert main(["card", "amazon-video-games"]) == 0
    out = capsys.readouterr().out
    assert "Not prepared yet: run `r2bench prepare amazon-video-games`" in out and "12,417 / 7,457 / 42,305" in out
    assert main(["card", "amazon-video-gmaes"]) == 2
    assert "did you mean 'amazon-video-games'" in capsys.readouterr().err


def test_every_registered_dataset_has_a_card(monkeypatch):
    monkeypatch.delenv("R2BENCH_CARDS_DIR", raising=False)  # the repository's cards
    from r2bench.data.cards import card_path
    from r2bench.data.registry import DATASETS

    for name in DATASETS.names():
        if not DATASETS.get(name).meta.get("third_party"):
            assert card_path(name).is_file(), name


def test_prepare_never_writes_the_package_cards(tmp_path, monkeypatch):
    """The package's own cards folder, read-only: prepare (default spec) reads it and changes nothing."""
    from r2bench.data.cards import cards_dir
    from tests.data.amazon_fixtures import write_category

    monkeypatch.delenv("R2BENCH_CARDS_DIR", raising=False)
    folder = cards_dir()
    assert (folder / "amazon-video-games.md").is_file()

    def snapshot():
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}

    before = snapshot()
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    write_category(tmp_path / "raw")
    try:
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        b = prepare("amazon-video-games", raw_dir=tmp_path / "raw")
        assert main(["card", "amazon-video-games"]) == 0
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert snapshot() == before
    own = (b.path / "card.md").read_text()
    assert "## Citation" in own and f"| users | {b.manifest['stats']['users']:,} | 12,417 |" in own
