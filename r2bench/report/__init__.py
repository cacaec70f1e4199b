"""Reports over runs: Table 2 style tables (md/latex/html/csv), plots and a self-contained HTML.

``make_report(runs, ...)`` is the entry point; other modules add their own sections
with :class:`Section` (title, table, images, text).
"""
