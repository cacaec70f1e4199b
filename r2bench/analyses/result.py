"""The output of one analysis: tables, one figure, a short markdown summary.

An ``AnalysisResult`` is what ``r2bench analyze`` writes to its output folder and
what ``r2bench study`` (and the report) embeds: every table as md/csv/latex (rendered
by :mod:`r2bench.report.render`, like the report's tables), the figure as PNG, and
``summary`` (markdown) that states the finding in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from r2bench.atomic import write_json, write_text
from r2bench.report.render import frame_to_csv, frame_to_latex, frame_to_markdown


@dataclass
class AnalysisResult:
    name: str  # e.g. "cold-start"
    title: str
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    summary: str = ""  # markdown paragraph(s)
    figure: Path | None = None
    notes: list[str] = field(default_factory=list)  # caveats (small groups, invariance violations...)
    data: dict[str, Any] = field(default_factory=dict)  # machine-readable headline numbers
    plot_data: Any = field(default=None, repr=False)  # what the analysis's ``draw`` needs (not written)
    #: the comparison it was computed on ("movielens-100k test, all 95 instances") when runs were grouped
    group: str = ""
    folder: Path | None = None  # where its files go (a sub-folder per group when there are several)

    @property
    def heading(self) -> str:
        return f"{self.title}: {self.group}" if self.group else self.title

    def display_tables(self) -> list[tuple[str, pl.DataFrame]]:
        """The tables shown in reports; long forms (``*_long``, ``cells``) are only in the CSV files."""
        return [(n, df) for n, df in self.tables.items() if not (n.endswith("_long") or n == "cells")]

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write every table as .csv/.md/.tex and a summary .md into ``out_dir``; returns the paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for tname, df in self.tables.items():
            stem = f"{self.name}_{tname}"
            with_csv = out_dir / f"{stem}.csv"
            write_text(with_csv, frame_to_csv(df))
            write_text(out_dir / f"{stem}.md", frame_to_markdown(df) + "\n")
            write_text(out_dir / f"{stem}.tex", frame_to_latex(df, caption=f"{self.title}: {tname}", label=stem) + "\n")
            written[tname] = with_csv
        write_text(out_dir / f"{self.name}.md", self.markdown(image_dir=out_dir))
        write_json(out_dir / f"{self.name}.json", {"name": self.name, "title": self.title, "group": self.group,
                                                   "data": self.data, "notes": self.notes})
        return written

    def markdown(self, image_dir: Path | None = None, level: int = 2) -> str:
        h = "#" * level
        parts = [f"{h} {self.heading}", ""]
        if self.summary:
            parts += [self.summary.strip(), ""]
        if self.figure is not None:
            rel = self.figure.name if image_dir is None else _relpath(self.figure, image_dir)
            parts += [f"![{self.heading}]({rel})", ""]
        for tname, df in self.display_tables():
            parts += [f"**{tname.replace('_', ' ')}**", "", frame_to_markdown(df), ""]
        for note in self.notes:
            parts += [f"> {note}", ""]
        return "\n".join(parts)


def _relpath(path: Path, start: Path) -> str:
    import os

    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:
        return str(path)
