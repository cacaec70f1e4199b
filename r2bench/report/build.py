"""Assemble a report from runs: comparison, Table 2, run details, plots, extra sections.

Other modules (e.g. the analyses) add content through :class:`Section`:
``make_report(runs, sections=[Section("Cold start", table=df, images=[png])])``.
Every format gets every section: Markdown links the PNGs next to it, LaTeX
includes them with ``\\includegraphics``, HTML embeds them as base64 (one
self-contained file), CSV is the tidy comparison frame.
"""

from __future__ import annotations

import base64
import html as _html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from r2bench.errors import R2BenchError
from r2bench.report import tables as T
from r2bench.report.compare import TABLE_METRICS, CompareOptions, compare_runs, reference_index
from r2bench.report.render import frame_to_html, frame_to_latex, frame_to_markdown, inline_markdown_html, tex_escape
from r2bench.report.select import Selection, select_runs

FORMATS = ("md", "latex", "html", "csv")
_EXT = {"md": "md", "latex": "tex", "html": "html", "csv": "csv"}


@dataclass
class Section:
    """An extra report section: a title, optional text, a table (a polars frame, or a
    pre-rendered Markdown string) and PNG images."""

    title: str
    table: pl.DataFrame | str | None = None
    images: list[Path] = field(default_factory=list)
    text: str = ""


@dataclass
class Report:
    compare: pl.DataFrame
    markdown: str
    files: dict[str, Path] = field(default_factory=dict)
    images: list[Path] = field(default_factory=list)


def _info_columns(info: dict[str, Any]) -> dict[str, Any]:
    """Method-specific columns worth showing: parse validity shares, tokens, failures."""
    out: dict[str, Any] = {}
    parse = info.get("parse")
    if isinstance(parse, dict):
        for k in ("valid", "partial", "unusable"):
            if k in parse:
                out[f"parse {k}"] = float(parse[k])
    usage = info.get("usage") or info.get("token_usage")
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        if total is None and ("prompt_tokens" in usage or "completion_tokens" in usage):
            total = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        if total is not None:
            out["tokens"] = int(total)
    fails = info.get("failures")
    if isinstance(fails, (int, float)):
        out["failures"] = int(fails)
    elif isinstance(fails, (dict, list)):
        out["failures"] = int(sum(fails.values())) if isinstance(fails, dict) and all(
            isinstance(v, (int, float)) for v in fails.values()) else len(fails)
    return out


def run_details(runs: Sequence[Any]) -> pl.DataFrame:
    """One row per run: label, dataset, split, instances, seed, timings and info columns
    (labels as the runs carry them: :func:`r2bench.report.select.select_runs` sets them)."""
    rows = []
    for r in runs:
        t = r.meta.get("timings") or {}
        row = {"method": r.label, "dataset": r.dataset, "split": r.split,
               "instances": r.meta.get("n_instances"), "seed": r.meta.get("seed"),
               "fit s": t.get("fit_s"), "score s": t.get("score_s")}
        row.update(_info_columns(r.info))
        row["run"] = r.run_id
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def _legend(opt: CompareOptions) -> str:
    against = ("the best run against the runner-up" if opt.reference in (None, "best")
               else f"each run against {opt.reference}")
    holm = ", Holm-corrected across all tests" if opt.holm else ""
    return (f"Best per column in bold. Two-sided paired Wilcoxon signed-rank test of {against}{holm}: "
            f"† p<0.05, ‡ p<0.01, § p<0.001. CIs: 95% percentile bootstrap over instances "
            f"({opt.n_boot} resamples, seed {opt.seed}).")


def _section_md(s: Section, rel: Path) -> str:
    parts = [f"## {s.title}"]
    if s.text:
        parts.append(s.text)
    if isinstance(s.table, pl.DataFrame):
        parts.append(frame_to_markdown(s.table))
    elif isinstance(s.table, str):
        parts.append(s.table)
    for img in s.images:
        parts.append(f"![{Path(img).stem}]({_relpath(Path(img), rel)})")
    return "\n\n".join(parts)


def _relpath(p: Path, base: Path) -> str:
    try:
        return str(p.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(p.resolve())


def _section_tex(s: Section) -> str:
    parts = [rf"\section*{{{tex_escape(s.title)}}}"]
    if s.text:
        parts.append(tex_escape(s.text))
    if isinstance(s.table, pl.DataFrame):
        parts.append(frame_to_latex(s.table, floating=False))
    elif isinstance(s.table, str):
        parts.append(r"\begin{verbatim}" + "\n" + s.table + "\n" + r"\end{verbatim}")
    for img in s.images:
        parts.append(rf"\includegraphics[width=\linewidth]{{{Path(img).resolve()}}}")
    return "\n\n".join(parts)


def _img_tag(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _section_html(s: Section) -> str:
    parts = [f"<h2>{_html.escape(s.title)}</h2>"]
    if s.text:
        parts.append(f"<p>{inline_markdown_html(s.text)}</p>")
    if isinstance(s.table, pl.DataFrame):
        parts.append(frame_to_html(s.table))
    elif isinstance(s.table, str):
        parts.append(f"<pre>{_html.escape(s.table)}</pre>")
    parts += [_img_tag(p) for p in s.images]
    return "\n".join(parts)


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "display:block;overflow-x:auto;"
        "margin:1em 0}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}"
        "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.group td{background:#f4f4f4}"
        "img{max-width:100%}caption{caption-side:bottom;font-size:85%;color:#555;padding-top:.5em}")


@dataclass
class _Block:
    """One comparison table of the report: its heading (None for the main table), the table, notes."""

    heading: str | None
    table: T.Table
    notes: list[str]


def _blocks(sel: Selection, compare: pl.DataFrame, opt: CompareOptions, show_ci: bool) -> list[_Block]:
    """The main table holds the comparisons on whole splits (one column block per dataset,
    the paper's Table 2); each comparison on part of a split (--limit, samples) gets its own."""
    shown = [g for g in sel.groups if g.originals]
    main = [g for g in shown if g.full]
    caption = _legend(opt)
    blocks = []
    for groups, heading in ([(main, None)] if main else []) + [([g], g.title) for g in shown if not g.full]:
        part = compare.filter(pl.col("comparison").is_in([g.title for g in groups]))
        notes = []
        for g in groups:
            where = f"{g.title}: " if heading is None and len(sel.groups) > 1 else ""
            notes += [f"{where}{n}" for n in g.notes]
            if opt.reference not in (None, "best") and len(g.originals) > 1 and \
                    reference_index([r.label for r in g.originals], g.originals, opt.reference) is None:
                several = [r.label for r in g.originals if r.method == opt.reference]
                why = (f"matches several runs ({', '.join(several)}); give one of their labels" if several
                       else "is not among these runs")
                notes.append(f"{where}--reference {opt.reference} {why}: the best is tested against the runner-up")
        blocks.append(_Block(heading, T.build_table(part, show_ci=show_ci, caption=caption), notes))
    return blocks


def _block_md(b: _Block) -> str:
    parts = [f"## {b.heading}"] if b.heading else []
    parts.append(T.to_markdown(b.table))
    if b.notes:
        parts.append("\n".join(f"- {n}" for n in b.notes))
    return "\n\n".join(parts)


def _block_tex(b: _Block) -> str:
    parts = [rf"\section*{{{tex_escape(b.heading)}}}"] if b.heading else []
    parts.append(T.to_latex(b.table))
    parts += [tex_escape(n) for n in b.notes]
    return "\n\n".join(parts)


def _block_html(b: _Block) -> str:
    parts = [f"<h2>{_html.escape(b.heading)}</h2>"] if b.heading else []
    parts.append(T.to_html(b.table))
    if b.notes:
        parts.append("<ul>" + "".join(f"<li>{_html.escape(n)}</li>" for n in b.notes) + "</ul>")
    return "\n".join(parts)


def make_report(
    runs: "Sequence[Any] | Selection",
    formats: Sequence[str] = ("md",),
    out: str | Path = "report",
    reference: str | None = None,
    show_ci: bool = False,
    holm: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    plots: bool = True,
    metrics: Sequence[str] = TABLE_METRICS,
    sections: Sequence[Section] = (),
    title: str = "r2bench report",
) -> Report:
    """Compare ``runs`` (any pile, or a :class:`~r2bench.report.select.Selection`) and write
    ``<out>/report.<ext>`` for each format (+ PNG plots): one comparison per benchmark,
    split and set of scored instances, a line saying what went where."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise R2BenchError(f"unknown report format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    sel = runs if isinstance(runs, Selection) else select_runs(runs)
    opt = CompareOptions(metrics=tuple(metrics), reference=reference, holm=holm, n_boot=n_boot, seed=seed)
    compare = compare_runs(sel, opt)
    if compare.height == 0:
        raise R2BenchError("nothing to compare: every run given is a perturbed run (the analyses use them: "
                           "`r2bench report --analyses` or `r2bench analyze`)")
    blocks = _blocks(sel, compare, opt, show_ci)
    shown = [r for g in sel.groups for r in g.originals]
    details = run_details(shown)
    summary = sel.summary_lines()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images: list[Path] = []
    if plots and "ndcg@10" in metrics:
        from r2bench.report.plots import bar_chart

        images.append(bar_chart(compare, out / "ndcg10.png", "ndcg@10"))
    main = Section("Results", table=None, images=images)
    detail_sec = Section("Runs", table=details)
    extra = list(sections)

    md = "\n\n".join([f"# {title}", "\n".join(summary)] + [_block_md(b) for b in blocks]
                     + [_section_md(detail_sec, out)]
                     + ([_section_md(Section("Plots", images=images), out)] if images else [])
                     + [_section_md(s, out) for s in extra]) + "\n"
    rep = Report(compare=compare, markdown=md, images=images)
    from r2bench.atomic import atomic_path, write_text

    for fmt in formats:
        target = out / f"report.{_EXT[fmt]}"
        if fmt == "md":
            write_text(target, md)
        elif fmt == "csv":
            with atomic_path(target) as tmp:
                compare.write_csv(tmp)
        elif fmt == "latex":
            body = "\n\n".join([tex_escape(" ".join(summary))] + [_block_tex(b) for b in blocks]
                               + [_section_tex(detail_sec)]
                               + [_section_tex(Section("Plots", images=images))] * bool(images)
                               + [_section_tex(s) for s in extra])
            write_text(target, "% generated by r2bench report; needs booktabs and graphicx\n" + body + "\n")
        elif fmt == "html":
            summary_html = (f"<p>{_html.escape(summary[0])}</p>" + ("<ul>" + "".join(
                f"<li>{_html.escape(x.lstrip('- '))}</li>" for x in summary[1:]) + "</ul>" if summary[1:] else ""))
            body = "\n".join([f"<h1>{_html.escape(title)}</h1>", summary_html] + [_block_html(b) for b in blocks]
                              + [_section_html(main), _section_html(detail_sec)] + [_section_html(s) for s in extra])
            write_text(target, f"<!doctype html><html><head><meta charset='utf-8'><title>{_html.escape(title)}"
                               f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
        rep.files[fmt] = target
    return rep
