"""Layout checks from matplotlib's own bounding boxes (shared by the figure tests).

:func:`layout_problems` draws a figure with the Agg renderer and reads the window
extents of every axes and of every text a reader needs (titles, the suptitle, axis
labels, tick labels, legends). It reports, one line each:

- any of them that leaves the figure;
- a legend that overlaps any axes (legends belong outside the axes);
- a title, axis label or tick label that overlaps the axes of another panel;
- the suptitle overlapping an axes; two panel titles overlapping;
- neighbouring tick labels of one axis that collide.
"""

from __future__ import annotations

TOL = 1.0  # pixels


def _overlap(a, b) -> bool:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > TOL and h > TOL


def _texts(ax, renderer):
    """(kind, text, bbox) of the texts of one axes that must stay readable."""
    out = []
    for t in (ax.title, ax._left_title, ax._right_title):
        if t.get_visible() and t.get_text():
            out.append(("title", t.get_text(), t.get_window_extent(renderer)))
    for axis, kind in ((ax.xaxis, "x label"), (ax.yaxis, "y label")):
        lab = axis.label
        if lab.get_visible() and lab.get_text():
            out.append((kind, lab.get_text(), lab.get_window_extent(renderer)))
        for t in shown_ticklabels(axis):
            out.append((f"{kind[0]} tick label", t.get_text(), t.get_window_extent(renderer)))
    return out


def shown_ticklabels(axis):
    """The tick labels matplotlib draws: visible, non-empty, at a tick inside the view limits."""
    lo, hi = sorted(axis.get_view_interval())
    eps = (hi - lo) * 1e-9
    return [t.label1 for t in axis.get_major_ticks()
            if lo - eps <= t.get_loc() <= hi + eps and t.label1.get_visible() and t.label1.get_text()]


def layout_problems(fig) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    problems = []

    def inside(kind, text, bb):
        if bb.x0 < -TOL or bb.y0 < -TOL or bb.x1 > W + TOL or bb.y1 > H + TOL:
            problems.append(f"{kind} {text!r} leaves the figure ({bb.x0:.0f},{bb.y0:.0f})-({bb.x1:.0f},{bb.y1:.0f}) "
                            f"of {W:.0f}x{H:.0f}")

    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    extents = {id(ax): ax.get_window_extent(renderer) for ax in axes}
    titles = []
    for ax in axes:
        for kind, text, bb in _texts(ax, renderer):
            inside(kind, text, bb)
            for other in axes:
                if other is not ax and _overlap(bb, extents[id(other)]):
                    problems.append(f"{kind} {text!r} overlaps the axes of another panel")
            if kind == "title":
                titles.append((text, bb))
        for axis in (ax.xaxis, ax.yaxis):
            bbs = [(t.get_text(), t.get_window_extent(renderer)) for t in shown_ticklabels(axis)]
            for (ta, a), (tb, b) in zip(bbs, bbs[1:]):
                if _overlap(a, b):
                    problems.append(f"tick labels {ta!r} and {tb!r} collide")
        if ax.get_legend() is not None:
            bb = ax.get_legend().get_window_extent(renderer)
            inside("legend", "", bb)
            if any(_overlap(bb, e) for e in extents.values()):
                problems.append("a legend overlaps an axes (legends belong outside the axes)")
    for leg in fig.legends:
        bb = leg.get_window_extent(renderer)
        inside("figure legend", "", bb)
        if any(_overlap(bb, e) for e in extents.values()):
            problems.append("the figure legend overlaps an axes")
    sup = fig._suptitle
    if sup is not None and sup.get_text():
        bb = sup.get_window_extent(renderer)
        inside("suptitle", sup.get_text(), bb)
        if any(_overlap(bb, e) for e in extents.values()):
            problems.append(f"suptitle {sup.get_text()!r} overlaps an axes")
        for text, tb in titles:
            if _overlap(bb, tb):
                problems.append(f"suptitle overlaps the title {text!r}")
    for i, (ta, a) in enumerate(titles):
        for tb, b in titles[i + 1:]:
            if _overlap(a, b):
                problems.append(f"titles {ta!r} and {tb!r} overlap")
    return problems
