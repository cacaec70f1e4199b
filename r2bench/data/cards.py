"""Data cards: ``data_cards/<dataset>.md`` with measured statistics filled in.

The hand-written card (source, citation, terms, caveats) lives in the repository;
the block between ``<!-- stats:begin -->`` and ``<!-- stats:end -->`` is generated
from a prepared benchmark's manifest (construction parameters, fingerprint, stats,
and for Amazon the paper's Table 1 beside ours). ``R2BENCH_CARDS_DIR`` points
elsewhere (tests, installed wheels without the repository's cards).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from r2bench.atomic import write_text

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


def refresh_card(dataset: str, manifest: dict[str, Any]) -> Path | None:
    """Fill the measured stats into the card file; None when there is no card to update."""
    path = card_path(dataset)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    new = fill_card(text, manifest)
    if new != text:
        write_text(path, new)
    return path
