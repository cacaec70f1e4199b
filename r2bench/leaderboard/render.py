"""Rendering boards as text: ``<dataset>/README.md``, ``<dataset>/index.html`` and the overview.

Pure functions of a board and its already validated, ranked entries
(:class:`~r2bench.leaderboard.scoring.Ranked`); validating, ranking and writing the
files is :mod:`r2bench.leaderboard.publish`, the fixed wording is
:mod:`r2bench.leaderboard.texts`. Every submitted string goes through ``safety``
(Markdown / HTML escaping, links only from checked http(s) URLs); recorded commands are
shown as typed, re-quoted readably (:func:`r2bench.provenance.readable_command`). The output depends
only on the entries (no clock), so re-rendering an unchanged board changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from r2bench.leaderboard import safety
from r2bench.leaderboard.board import Board
from r2bench.leaderboard.scoring import BoardView, Ranked
from r2bench.leaderboard.texts import (
    GENERATED, MARKERS_NOTE, NO_ENTRIES, OVERVIEW_GENERATED, OVERVIEW_INTRO, PLACEHOLDER, PLACEHOLDER_HTML,
    PLACEHOLDER_ROW, RANKED_BY, RANKED_BY_HTML, SUBMITTING,
)
from r2bench.provenance import readable_command

COLUMNS = ("#", "Method", "NDCG@1", "NDCG@5", "NDCG@10", "95% CI (NDCG@10)", "p vs leader",
           "Backbone", "Size", "Tokens / 1k inst.", "Cost / 1k inst.", "Val split", "Date")


@dataclass
class Cells:
    """One table row as plain strings (escaped per format by the caller)."""

    rank: str
    name: str
    url: str | None
    ndcg1: str
    ndcg5: str
    ndcg10: str
    marker: str
    ci: str
    p: str
    backbone: str
    size: str
    tokens: str
    cost: str
    val: str
    date: str


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:.4g}"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def cells(r: Ranked) -> Cells:
    card = r.entry.card
    cost = r.entry.raw.get("cost") or {}
    return Cells(
        rank=str(r.rank), name=r.entry.name, url=card.get("url"),
        ndcg1=_fmt(r.means["ndcg@1"]), ndcg5=_fmt(r.means["ndcg@5"]), ndcg10=_fmt(r.means["ndcg@10"]),
        marker=r.marker, ci=f"[{r.ci[0]:.4f}, {r.ci[1]:.4f}]", p=_p(r.p_value),
        backbone=str(card.get("backbone") or "–"), size=str(card.get("params") or "–"),
        tokens=_num(cost.get("tokens_per_1k")), cost=_num(cost.get("cost_per_1k")),
        val="yes" if card.get("used_val_split") else "no", date=str(r.entry.raw.get("submitted_at", "–")),
    )


def _summary(board: Board) -> str:
    return (f"Benchmark `{board.dataset}` (fingerprint `{str(board.fingerprint)[:16]}`), "
            f"test split: {board.n_instances} instances × {board.k} candidates (one positive).")


def render_markdown(board: Board, ranked: list[Ranked]) -> str:
    e = safety.md_escape
    lines = [f"# Leaderboard: {e(board.title)}", "", GENERATED, ""]
    if board.placeholder:
        lines += [PLACEHOLDER, ""]
        if board.raw.get("note"):
            lines += [e(board.raw["note"]), ""]
        return "\n".join(lines)
    lines += [_summary(board), ""]
    if board.raw.get("note"):  # e.g. the history of the board's fingerprint
        lines += [e(board.raw["note"]), ""]
    lines += [RANKED_BY, ""]
    if not ranked:
        lines += [NO_ENTRIES, ""]
        return "\n".join(lines)
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---:" if c in ("#", "Size") or c.startswith(("NDCG", "p ", "Tokens", "Cost")) else "---"
                                for c in COLUMNS) + "|")
    for r in ranked:
        c = cells(r)
        ndcg10 = f"**{c.ndcg10}**{c.marker}" if r.rank == 1 else f"{c.ndcg10}{c.marker}"
        row = [c.rank, safety.md_link(c.name, c.url), c.ndcg1, c.ndcg5, ndcg10, c.ci, c.p,
               e(c.backbone), e(c.size), c.tokens, c.cost, c.val, c.date]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", MARKERS_NOTE, "", "## Entries", ""]
    for r in ranked:
        card = r.entry.card
        run = r.entry.raw.get("run") or {}
        parts = [f"- **{e(r.entry.name)}** (`{r.entry.slug}`)"]
        if card.get("description"):
            parts.append(f": {e(card['description'])}")
        lines.append("".join(parts))
        for label, value, code in (("Authors", card.get("authors"), False),
                                   ("Training data", card.get("training_data"), False),
                                   ("Run command", readable_command(run.get("command")), True),
                                   ("Submitted with", readable_command(r.entry.raw.get("submit_command")), True),
                                   ("Run", run.get("run_id"), True)):
            if value:
                lines.append(f"  - {label}: {safety.md_code(value) if code else e(value)}")
    lines.append("")
    return "\n".join(lines)


def render_html(board: Board, ranked: list[Ranked], plot_png_b64: str | None) -> str:
    h = safety.h
    head = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        # No script may run on this page, whatever an entry contains.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">\n"
        f"<title>r2bench leaderboard: {h(board.title)}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em}"
        "td{white-space:nowrap}td.name{white-space:normal;min-width:15em}"
        "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}</style>\n"
        "</head><body>\n"
    )
    body = [f"<h1>Leaderboard: {h(board.title)}</h1>"]
    if board.placeholder or not ranked:
        body.append(f"<p>{PLACEHOLDER_HTML}</p>")
        if board.placeholder and board.raw.get("note"):
            body.append(f"<p>{h(board.raw['note'])}</p>")
    else:
        body.append(f"<p>Benchmark <code>{h(board.dataset)}</code> (fingerprint <code>{h(str(board.fingerprint)[:16])}"
                    f"</code>), test split: {board.n_instances} instances &times; {board.k} candidates. "
                    f"{RANKED_BY_HTML}</p>")
        if board.raw.get("note"):
            body.append(f"<p>{h(board.raw['note'])}</p>")
        body.append("<table>\n<thead><tr>" + "".join(f"<th>{h(c)}</th>" for c in COLUMNS) + "</tr></thead>\n<tbody>")
        for r in ranked:
            c = cells(r)
            ndcg10 = f"<b>{h(c.ndcg10)}</b>" if r.rank == 1 else h(c.ndcg10)
            tds = [f"<td class=\"n\">{h(c.rank)}</td>", f"<td class=\"name\">{safety.html_link(c.name, c.url)}</td>",
                   f"<td class=\"n\">{h(c.ndcg1)}</td>", f"<td class=\"n\">{h(c.ndcg5)}</td>",
                   f"<td class=\"n\">{ndcg10}{h(c.marker)}</td>", f"<td class=\"n\">{h(c.ci)}</td>",
                   f"<td class=\"n\">{h(c.p)}</td>", f"<td>{h(c.backbone)}</td>", f"<td class=\"n\">{h(c.size)}</td>",
                   f"<td class=\"n\">{h(c.tokens)}</td>", f"<td class=\"n\">{h(c.cost)}</td>",
                   f"<td>{h(c.val)}</td>", f"<td>{h(c.date)}</td>"]
            desc = r.entry.card.get("description")
            title = f" title=\"{h(desc)}\"" if desc else ""
            body.append(f"<tr{title}>" + "".join(tds) + "</tr>")
        body.append("</tbody></table>")
        body.append(f"<p>{h(MARKERS_NOTE)}</p>")
        if plot_png_b64:
            body.append(f"<img alt=\"NDCG@10 with 95% CI per entry\" src=\"data:image/png;base64,{plot_png_b64}\">")
        body.append("<h2>Entries</h2>\n<ul>")
        for r in ranked:
            card, run = r.entry.card, r.entry.raw.get("run") or {}
            desc = f": {h(card['description'])}" if card.get("description") else ""
            details = "".join(
                f"<li>{h(label)}: <code>{h(value)}</code></li>" if code else f"<li>{h(label)}: {h(value)}</li>"
                for label, value, code in (("Authors", card.get("authors"), False),
                                           ("Training data", card.get("training_data"), False),
                                           ("Run command", readable_command(run.get("command")), True),
                                           ("Submitted with", readable_command(r.entry.raw.get("submit_command")),
                                            True))
                if value)
            body.append(f"<li><b>{h(r.entry.name)}</b>{desc}<ul>{details}</ul></li>")
        body.append("</ul>")
    return head + "\n".join(body) + "\n</body></html>\n"


def plot_figure(names: list[str], means, lo_err, hi_err, title: str, methods: list[str] | None = None):
    """Horizontal bars of NDCG@10 with 95% CIs, the leader on top; each bar in its method's
    report colour (:mod:`r2bench.report.style`), names wrapped, the figure as tall as the board."""
    from r2bench.report import style as S

    n = len(names)
    width = 7.5
    head = S.title_lines(title, width)
    fig, axes = S.figure(width, 0.9 + 0.38 * n + 0.2 * head.count("\n") + 0.35)
    ax = axes[0, 0]
    # each entry in its method's colour; several entries of one method in its shades and hatches
    styles = S.run_styles(names, dict(zip(names, methods))) if methods else {}
    y = list(range(n))
    for yi, name, m, lo, hi in zip(y, names, means, lo_err, hi_err):
        st = styles.get(name, S.Style("#4c72b0"))
        ax.barh(yi, m, 0.7, xerr=[[lo], [hi]], color=st.color, hatch=st.hatch, capsize=3,
                edgecolor="#333333" if st.hatch else st.color, linewidth=0.4, error_kw={"ecolor": "#333333"})
    top = max((m + h for m, h in zip(means, hi_err)), default=1e-9)
    for yi, m, h in zip(y, means, hi_err):
        ax.text(m + h + 0.01 * top, yi, f"{m:.4f}", va="center", fontsize=8)
    ax.set_yticks(y, [S.wrap(x, 30) for x in names], fontsize=8)
    ax.set_ylim(n - 0.5 + max(0.1, (2.5 - n) / 2), -0.5 - max(0.1, (2.5 - n) / 2))
    ax.set_xlabel("NDCG@10 (bars: mean; whiskers: 95% bootstrap CI)", fontsize=9)
    ax.set_xlim(0, max(1e-9, top) * 1.18)
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle(head, fontsize=11)
    return fig


def plot_png_base64(ranked: list[Ranked], title: str) -> str | None:
    """:func:`plot_figure` of the ranked entries as base64 PNG (None without matplotlib)."""
    from r2bench.extras import available

    if not ranked or not available("matplotlib"):
        return None
    import base64
    import io

    fig = plot_figure([r.entry.name for r in ranked], [r.means["ndcg@10"] for r in ranked],
                      [r.means["ndcg@10"] - r.ci[0] for r in ranked], [r.ci[1] - r.means["ndcg@10"] for r in ranked],
                      title, [str((r.entry.raw.get("run") or {}).get("method") or r.entry.name) for r in ranked])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_overview(views: list[BoardView]) -> str:
    lines = ["# r2bench leaderboards", "", OVERVIEW_GENERATED, "", OVERVIEW_INTRO, "",
             "| Board | Fingerprint | Test instances | Entries | Leader | NDCG@10 |", "|---|---|---:|---:|---|---:|"]
    for view in views:
        board, ok = view.board, view.ranked
        if board is None:
            continue
        name = f"[{safety.md_escape(board.title)}](<{view.folder.name}/README.md>)"
        if board.placeholder:
            lines.append(f"| {name} | – | – | 0 | {PLACEHOLDER_ROW} | – |")
        elif not ok:
            lines.append(f"| {name} | `{str(board.fingerprint)[:12]}` | {board.n_instances} | 0 | – | – |")
        else:
            lead = ok[0]
            lines.append(f"| {name} | `{str(board.fingerprint)[:12]}` | {board.n_instances} | {len(ok)} | "
                         f"{safety.md_escape(lead.entry.name)} | {lead.means['ndcg@10']:.4f} |")
    lines += ["", "## Submitting", "", *SUBMITTING, ""]
    return "\n".join(lines)
