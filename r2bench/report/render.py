"""One way to render a table (a polars frame) as Markdown, LaTeX, HTML or CSV, for reports and analyses.

Every format shows a cell the same way (:func:`fmt`): null as empty, NaN as ``n/a``,
booleans as ``yes`` / ``no``, floats with 4 decimals (scientific notation below
0.001, so a small p-value does not print as 0.0000), anything else as its text. Each
format then escapes that text for itself: Markdown escapes ``|``, LaTeX escapes its
special characters (and ``<`` / ``>``, which text mode would print as other glyphs),
HTML goes through ``html.escape``. The paper-style Table 2 (:mod:`r2bench.report.tables`)
uses the same escaping for its labels.
"""

from __future__ import annotations

import html as _html
import math
from typing import Any

import polars as pl

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", ">": r"$>$", "<": r"$<$"}


def fmt(value: Any, digits: int = 4) -> str:
    """A cell as text, the same in every format (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and abs(value) < 10 ** -(digits - 1):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}"
    return str(value)


def md_escape(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|")


def tex_escape(text: str) -> str:
    """Text safe in LaTeX text mode."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def html_escape(text: str) -> str:
    return _html.escape(str(text))


def inline_markdown_html(text: str) -> str:
    """A paragraph of the analyses' Markdown (``**bold**``, ```code```) as escaped HTML."""
    import re

    t = html_escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def frame_to_markdown(df: pl.DataFrame, digits: int = 4) -> str:
    header = "| " + " | ".join(md_escape(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(md_escape(fmt(v, digits)) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([header, sep, *rows])


def frame_to_latex(df: pl.DataFrame, caption: str = "", label: str = "", digits: int = 4,
                   floating: bool = True) -> str:
    """A booktabs ``tabular``; ``floating`` wraps it in a ``table`` with the caption and ``tab:<label>``."""
    lines = [r"\begin{table}[t]", r"\centering"] if floating else []
    if floating and caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    if floating and label:
        lines.append(rf"\label{{tab:{label}}}")
    lines += [rf"\begin{{tabular}}{{{'l' * len(df.columns)}}}", r"\toprule",
              " & ".join(tex_escape(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(tex_escape(fmt(v, digits)) for v in row) + r" \\" for row in df.iter_rows()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if floating:
        lines.append(r"\end{table}")
    return "\n".join(lines)


def _td(value: Any, digits: int) -> str:
    """A cell; numbers get ``class="n"`` so that a style sheet can right-align them (and only them)."""
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"<td{' class=n' if num else ''}>{html_escape(fmt(value, digits))}</td>"


def frame_to_html(df: pl.DataFrame, digits: int = 4) -> str:
    head = "".join(f"<th>{html_escape(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(_td(v, digits) for v in row) + "</tr>" for row in df.iter_rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def frame_to_csv(df: pl.DataFrame) -> str:
    """The frame's own values (full precision, nulls empty): CSV is for machines."""
    return df.write_csv()
