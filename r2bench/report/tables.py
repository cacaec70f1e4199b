"""The paper's Table 2 layout and its renderers (Markdown, LaTeX, HTML; escaping from :mod:`r2bench.report.render`).

Rows are methods in groups (sanity / conventional / LLM-based / R2Rank / other),
columns are datasets x NDCG@1/5/10; the best value of each column is bold and a
significance marker († p<0.05, ‡ p<0.01, § p<0.001) follows the values that differ
significantly from what they were compared with (see
:func:`r2bench.report.compare.compare_runs`). The CSV output is the tidy
comparison frame itself.
"""

from __future__ import annotations

import html as _html
from dataclasses import dataclass, field

import polars as pl

from r2bench.report.render import md_escape, tex_escape

#: method name -> display group; methods not listed fall into "Other"
GROUP_ORDER = ("Sanity baselines", "Conventional recommenders", "LLM-based", "R2Rank", "Other")
METHOD_GROUPS = {
    "random": "Sanity baselines", "popularity": "Sanity baselines", "item-cooccurrence": "Sanity baselines",
    "sasrec": "Conventional recommenders", "bert4rec": "Conventional recommenders",
    "lightgcn": "Conventional recommenders",
    "llm-listwise": "LLM-based", "llm-pointwise": "LLM-based", "llm-reflective": "LLM-based",
    "prompt4nr": "LLM-based", "tallrec": "LLM-based", "r2ec": "LLM-based",
    "r2rank": "R2Rank",
}


def group_of(method: str) -> str:
    if method in METHOD_GROUPS:
        return METHOD_GROUPS[method]
    if method.startswith("llm"):
        return "LLM-based"
    if method.startswith("r2rank"):
        return "R2Rank"
    return "Other"


def method_rank(method: str) -> tuple[int, int, str]:
    """Where a method goes in tables, legends and colours: its group (sanity, conventional,
    LLM-based, R2Rank, other), then the order of :data:`METHOD_GROUPS`, then its name."""
    known = list(METHOD_GROUPS)
    return (GROUP_ORDER.index(group_of(method)), known.index(method) if method in known else len(known), method)


@dataclass
class Cell:
    value: float | None
    bold: bool = False
    marker: str = ""
    ci: tuple[float, float] | None = None

    def text(self, digits: int = 4) -> str:
        return "–" if self.value is None else f"{self.value:.{digits}f}"


@dataclass
class Table:
    """A rendered-agnostic table: ``columns`` are (dataset, metric) pairs."""

    columns: list[tuple[str, str]]
    groups: list[tuple[str, list[tuple[str, list[Cell]]]]] = field(default_factory=list)
    caption: str = ""

    @property
    def datasets(self) -> list[str]:
        seen: list[str] = []
        for d, _ in self.columns:
            if d not in seen:
                seen.append(d)
        return seen


def build_table(compare: pl.DataFrame, show_ci: bool = False, caption: str = "") -> Table:
    """Turn the frame of :func:`compare_runs` into a grouped :class:`Table`: one block of
    columns per comparison (its ``column`` name, else the dataset), rows in method-group
    order and, within a method, in the order the runs come (as the selection sorts them)."""
    block = "column" if "column" in compare.columns else "dataset"
    blocks = compare[block].unique(maintain_order=True).to_list()
    metrics = compare["metric"].unique(maintain_order=True).to_list()
    columns = [(d, m) for d in blocks for m in metrics]
    labels = compare.select("label", "method").unique(subset="label", maintain_order=True)
    cells: dict[tuple[str, str, str], Cell] = {}
    for r in compare.iter_rows(named=True):
        cells[(r["label"], r[block], r["metric"])] = Cell(
            r["mean"], bool(r["is_best"]), r["marker"] or "",
            (r["ci_low"], r["ci_high"]) if show_ci else None,
        )
    by_group: dict[str, list[tuple[str, list[Cell]]]] = {}
    method_of = dict(labels.iter_rows())
    appearance = {label: i for i, label in enumerate(method_of)}
    for label, method in labels.iter_rows():
        row = [cells.get((label, d, m), Cell(None)) for d, m in columns]
        by_group.setdefault(group_of(method), []).append((label, row))
    groups = [
        (g, sorted(by_group[g], key=lambda row: (method_rank(method_of[row[0]]), appearance[row[0]])))
        for g in GROUP_ORDER if g in by_group
    ]
    return Table(columns=columns, groups=groups, caption=caption)


def _metric_head(m: str) -> str:
    return "@" + m.split("@", 1)[1] if "@" in m else m


def _cell_md(c: Cell) -> str:
    t = c.text()
    if c.bold and c.value is not None:
        t = f"**{t}**"
    t += c.marker
    if c.ci:
        t += f" [{c.ci[0]:.3f}, {c.ci[1]:.3f}]"
    return t


def to_markdown(table: Table) -> str:
    head = ["Method"] + [f"{d} {_metric_head(m)}" for d, m in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for group, rows in table.groups:
        lines.append("| *" + group + "* |" + " |" * len(table.columns))
        for label, cells in rows:
            lines.append("| " + " | ".join([md_escape(label)] + [_cell_md(c) for c in cells]) + " |")
    if table.caption:
        lines += ["", table.caption]
    return "\n".join(lines)


_TEX_MARK = {"†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$", "§": r"$^{\S}$"}


def _cell_tex(c: Cell) -> str:
    t = c.text(3)
    if c.bold and c.value is not None:
        t = rf"\textbf{{{t}}}"
    t += "".join(_TEX_MARK.get(ch, "") for ch in c.marker)
    if c.ci:
        t += rf" {{\scriptsize[{c.ci[0]:.3f}, {c.ci[1]:.3f}]}}"
    return t


def to_latex(table: Table) -> str:
    n = len(table.columns)
    per = {d: sum(1 for dd, _ in table.columns if dd == d) for d in table.datasets}
    out = [r"\begin{table}[t]", r"\centering"]
    if table.caption:
        out.append(rf"\caption{{{tex_escape(table.caption)}}}")
    out += [r"\begin{tabular}{l" + "c" * n + "}", r"\toprule"]
    out.append("Method & " + " & ".join(rf"\multicolumn{{{per[d]}}}{{c}}{{{tex_escape(d)}}}" for d in table.datasets)
               + r" \\")
    out.append(" & " + " & ".join(tex_escape(_metric_head(m)) for _, m in table.columns) + r" \\")
    out.append(r"\midrule")
    for group, rows in table.groups:
        out.append(rf"\multicolumn{{{n + 1}}}{{l}}{{\textit{{{tex_escape(group)}}}}} \\")
        for label, cells in rows:
            out.append(tex_escape(label) + " & " + " & ".join(_cell_tex(c) for c in cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out)


def _cell_html(c: Cell) -> str:
    t = _html.escape(c.text())
    if c.bold and c.value is not None:
        t = f"<b>{t}</b>"
    if c.marker:
        t += f"<sup>{_html.escape(c.marker)}</sup>"
    if c.ci:
        t += f' <small>[{c.ci[0]:.3f}, {c.ci[1]:.3f}]</small>'
    return t


def to_html(table: Table) -> str:
    per = {d: sum(1 for dd, _ in table.columns if dd == d) for d in table.datasets}
    h = ["<table>"]
    if table.caption:
        h.append(f"<caption>{_html.escape(table.caption)}</caption>")
    h.append("<thead><tr><th rowspan=2>Method</th>"
             + "".join(f"<th colspan={per[d]}>{_html.escape(d)}</th>" for d in table.datasets) + "</tr>")
    h.append("<tr>" + "".join(f"<th class=n>{_html.escape(_metric_head(m))}</th>" for _, m in table.columns)
             + "</tr></thead><tbody>")
    for group, rows in table.groups:
        h.append(f"<tr class=group><td colspan={len(table.columns) + 1}><i>{_html.escape(group)}</i></td></tr>")
        for label, cells in rows:
            h.append(f"<tr><td>{_html.escape(label)}</td>" + "".join(f"<td class=n>{_cell_html(c)}</td>" for c in cells)
                     + "</tr>")
    h.append("</tbody></table>")
    return "\n".join(h)
