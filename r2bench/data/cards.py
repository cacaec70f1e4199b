"""Data cards: the hand-written card of a dataset with a benchmark's measured statistics.

The hand-written card (source, citation, terms, caveats) lives in the repository's
``data_cards/<dataset>.md``; the block between ``<!-- stats:begin -->`` and
``<!-- stats:end -->`` is generated from a prepared benchmark's manifest
(construction parameters, fingerprint, stats, and for Amazon the paper's Table 1
beside ours). ``R2BENCH_CARDS_DIR`` points elsewhere (tests, installed wheels
without the repository's cards).

Every prepared benchmark carries its own card, ``card.md`` next to its manifest
(:func:`write_benchmark_card`, called by ``prepare``). The committed cards are only
read by ``prepare``; they change only through the maintainer command
``r2bench card DATASET --write-repo-card`` (:func:`write_repo_card`), so preparing
a private file never rewrites the package or the checkout it is installed from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from r2bench.atomic import write_text

CARD_FILE = "card.md"  # a benchmark's own card, next to its manifest.json
BEGIN = "<!-- stats:begin -->"
END = "<!-- stats:end -->"

# the paper's Table 1 (after its preprocessing): users / items / interactions
PAPER_TABLE1: dict[str, dict[str, int]] = {
    "amazon-musical-instruments": {"users": 13_031, "items": 10_326, "interactions": 49_171},
    "amazon-movies-and-tv": {"users": 19_606, "items": 30_809, "interactions": 83_047},
    "amazon-video-games": {"users": 12_417, "items": 7_457, "interactions": 42_305},
}


def cards_dir() -> Path:
    env = os.environ.get("R2BENCH_CARDS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data_cards"


def card_path(dataset: str) -> Path:
    return cards_dir() / f"{dataset}.md"


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def render_stats(manifest: dict[str, Any]) -> str:
    """The generated block: spec, fingerprint, Table-1 style stats and per-split counts."""
    ds = manifest["dataset"]
    st = manifest["stats"]
    paper = PAPER_TABLE1.get(ds)
    lines = [BEGIN, "", f"Measured on the prepared benchmark `{manifest['fingerprint'][:16]}` "
             f"(r2bench {manifest.get('r2bench_version', '?')}).", ""]
    if paper:
        lines += ["| statistic | r2bench | paper (Table 1) |", "|---|---:|---:|"]
    else:
        lines += ["| statistic | r2bench |", "|---|---:|"]
    for key in ("users", "items", "interactions", "density", "avg_sequence_length", "max_sequence_length", "instances"):
        if key in st:
            row = f"| {key} | {_fmt(st[key])} |"
            if paper:
                row += f" {_fmt(paper[key])} |" if key in paper else " |"
            lines.append(row)
    lines += ["", "| split | users | instances | targets unseen in train |", "|---|---:|---:|---:|"]
    for s in ("train", "val", "test"):
        v = st.get("splits", {}).get(s)
        if not v:
            continue
        lines.append(f"| {s} | {_fmt(v['users'])} | {_fmt(v['instances'])} | {_fmt(v['cold_targets'])} |")
    src = manifest.get("source", {})
    if src.get("bad_lines_skipped"):
        lines += ["", f"Malformed lines skipped: {src['bad_lines_skipped']}."]
    lines += ["", "Construction parameters (manifest `spec`):", ""]
    lines += [f"- `{k}`: `{v}`" for k, v in sorted(manifest["spec"].items())]
    lines += ["", END]
    return "\n".join(lines)


def fill_card(text: str, manifest: dict[str, Any] | None, dataset: str | None = None) -> str:
    """Replace the stats block of a card (appended when the card has no markers)."""
    if manifest:
        block = render_stats(manifest)
    else:
        paper = PAPER_TABLE1.get(dataset or "")
        note = (
            f"\nPaper (Table 1): users / items / interactions = {paper['users']:,} / {paper['items']:,} / "
            f"{paper['interactions']:,}.\n" if paper else ""
        )
        block = f"{BEGIN}\n\nNot prepared yet: run `r2bench prepare {dataset or '<dataset>'}`.\n{note}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + "\n\n## Statistics\n\n" + block + "\n"


def benchmark_card(manifest: dict[str, Any], description: str | None = None) -> str:
    """The card of one prepared benchmark: the dataset's hand-written card, this benchmark's stats."""
    ds = manifest["dataset"]
    path = card_path(ds)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:  # a custom dataset, or an install without the repository's cards
        src = manifest.get("source", {})
        about = description or src.get("name") or "no hand-written card for this dataset"
        files = ", ".join(f"`{f['name']}`" for f in src.get("files", []) if "name" in f)
        text = f"# Data card: {ds}\n\n{about}.\n" + (f"\nSource files: {files}.\n" if files else "")
    return fill_card(text, manifest, ds)


def write_benchmark_card(folder: str | Path, manifest: dict[str, Any], description: str | None = None) -> Path:
    """Write ``card.md`` into a prepared benchmark's folder (atomically)."""
    path = Path(folder) / CARD_FILE
    write_text(path, benchmark_card(manifest, description))
    return path


def write_repo_card(dataset: str, manifest: dict[str, Any]) -> Path | None:
    """Fill the measured stats into the committed card; None when there is no card to update.

    Only ``r2bench card DATASET --write-repo-card`` calls this: the maintainer's
    explicit step after preparing the canonical benchmark.
    """
    path = card_path(dataset)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    new = fill_card(text, manifest)
    if new != text:
        write_text(path, new)
    return path
