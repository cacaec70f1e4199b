"""How every figure of a report looks: one colour per method, readable labels, legends outside.

- **Colours** are fixed per method (:data:`METHOD_COLORS`; other methods get one of
  :data:`EXTRA_COLORS` by a stable hash of their name), so a method keeps its colour in
  every figure and every report. Several runs of one method (configs, seeds) keep the
  method's hue and differ in shade, hatch, line style and marker (:func:`run_styles`).
- **Order** is the tables' order (:func:`r2bench.report.tables.method_rank`: sanity,
  conventional, LLM-based, R2Rank, then the order the runs come in), never alphabetical.
- **Figures** use constrained layout and grow with their content; long labels are wrapped
  (:func:`wrap`) and legends go below the axes, outside them (:func:`legend_below`).

matplotlib is imported only inside the functions that need it (the ``plot`` extra).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2bench.report.tables import method_rank
from r2bench.stablehash import hash64

DPI = 110
#: the colour of each built-in method (tab10 / tab20 hues; random is the grey chance line)
METHOD_COLORS = {
    "random": "#7f7f7f", "popularity": "#8c564b", "item-cooccurrence": "#bcbd22",
    "sasrec": "#1f77b4", "bert4rec": "#17becf", "lightgcn": "#9467bd",
    "llm-listwise": "#ff7f0e", "llm-pointwise": "#e377c2", "llm-reflective": "#aec7e8", "tallrec": "#2ca02c",
    "prompt4nr": "#c5b0d5", "r2ec": "#ff9896", "r2rank": "#d62728",
}
#: colours for methods r2bench does not know, chosen by a stable hash of the method name
EXTRA_COLORS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
                "#756bb1", "#636363")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "--", "oo")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: characters per line of a wrapped label in legends and tick labels
WRAP = 28


@dataclass(frozen=True)
class Style:
    color: str
    hatch: str = ""
    linestyle: str = "-"
    marker: str = "o"


def method_color(method: str) -> str:
    return METHOD_COLORS.get(method) or EXTRA_COLORS[hash64(method) % len(EXTRA_COLORS)]


def _shade(color: str, variant: int) -> str:
    """The method's colour for its ``variant``-th run: itself, then lighter / darker in turn."""
    from matplotlib.colors import to_hex, to_rgb

    if variant == 0:
        return color
    rgb = to_rgb(color)
    level = ((variant + 1) // 2 - 1) % 3 + 1  # 1, 1, 2, 2, 3, 3, 1, ...: hatches tell later runs apart
    lighter = variant % 2 == 1
    amount = (0.2, 0.38, 0.5)[level - 1] if lighter else (0.25, 0.45, 0.6)[level - 1]
    toward = 1.0 if lighter else 0.0  # never so light that a line or bar fades into the white background
    return to_hex(tuple(c + (toward - c) * amount for c in rgb))


def ordered(labels: Iterable[str], method_of: dict[str, str]) -> list[str]:
    """``labels`` in the tables' order: method group, then the order they come in."""
    labels = list(dict.fromkeys(labels))
    pos = {lab: i for i, lab in enumerate(labels)}
    return sorted(labels, key=lambda lab: (method_rank(method_of.get(lab, lab.split(" ")[0])), pos[lab]))


def run_styles(labels: Iterable[str], method_of: dict[str, str] | None = None) -> dict[str, Style]:
    """A :class:`Style` per label: the method's colour, the n-th run of a method its n-th
    shade, hatch, line style and marker. ``method_of`` maps labels to methods (default:
    the label's first word, which is the method unless the run has a ``--label``)."""
    method_of = dict(method_of or {})
    out: dict[str, Style] = {}
    seen: dict[str, int] = {}
    for lab in ordered(labels, method_of):
        m = method_of.get(lab, lab.split(" ")[0])
        i = seen.get(m, 0)
        seen[m] = i + 1
        out[lab] = Style(_shade(method_color(m), i), HATCHES[i % len(HATCHES)], LINESTYLES[i % len(LINESTYLES)],
                         MARKERS[i % len(MARKERS)])
    return out


def wrap(text: str, width: int = WRAP) -> str:
    """``text`` on lines of at most ``width`` characters (line breaks in it are kept; long
    words such as run ids are cut)."""
    return "\n".join(line for part in str(text).split("\n")
                     for line in (textwrap.wrap(part, width, break_long_words=True) or [part]))


def figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw: Any):
    """A constrained-layout ``Figure`` (object API: no pyplot state) and its axes grid (2-D)."""
    from r2bench.extras import require

    require("matplotlib", purpose="plots")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def legend_below(fig, handles: Sequence[Any], labels: Sequence[str], title: str | None = None, fontsize: float = 8):
    """A figure legend under the axes (outside them), in as many columns as the width allows."""
    if not handles:
        return None
    wrapped = [wrap(lab) for lab in labels]
    widest = max(max(len(line) for line in lab.split("\n")) for lab in wrapped)
    per_col = 0.62 + widest * fontsize * 0.0075  # inches: handle + text at ~0.55 em per character
    ncols = max(1, min(len(labels), int(fig.get_figwidth() * 0.95 // per_col)))
    return fig.legend(handles, wrapped, loc="outside lower center", ncols=ncols, fontsize=fontsize,
                      frameon=False, title=title, title_fontsize=fontsize)


def legend_rows(n_labels: int, fig_width: float, labels: Sequence[str], fontsize: float = 8) -> float:
    """The height (inches) :func:`legend_below` will need, so callers can size the figure."""
    if not n_labels:
        return 0.0
    wrapped = [wrap(lab) for lab in labels]
    widest = max(max(len(line) for line in lab.split("\n")) for lab in wrapped)
    per_col = 0.62 + widest * fontsize * 0.0075
    ncols = max(1, min(n_labels, int(fig_width * 0.95 // per_col)))
    lines = max(lab.count("\n") + 1 for lab in wrapped)
    rows = -(-n_labels // ncols)
    return 0.25 + rows * lines * fontsize * 1.45 / 72


def title_lines(text: str, width_in: float, fontsize: float = 11) -> str:
    """A title wrapped to a figure ``width_in`` inches wide (no cut titles)."""
    chars = max(20, int(width_in * 72 / (fontsize * 0.6)))
    return wrap(text, chars)


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically."""
    from r2bench.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return path
