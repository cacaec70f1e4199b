"""Leaderboards: validated submissions, recomputed scores, rendered boards.

Layout (in the repository, grown by pull requests that CI validates)::

    leaderboards/
      README.md                     overview of all boards (rendered)
      <dataset>/board.json          the canonical benchmark: fingerprint + test instances (board.py)
      <dataset>/entries/<slug>.json one submission each (schema.py)
      <dataset>/README.md           the ranked table (rendered, render.py)
      <dataset>/index.html          the same table + a plot, self-contained (rendered)

Modules, lowest first: ``safety`` (slugs, allowed names/URLs, Markdown/HTML escaping),
``board``, ``schema`` (entry format, score encoding, the parsed ``Entry``), ``scoring``
(metrics recomputed from the scores, ranking, CI, significance), ``validate`` (CI
checks), ``texts`` (the boards' fixed wording), ``render`` (pages from ranked entries),
``publish`` (validate + rank + render + write), ``submit`` (run -> entry).
"""

DEFAULT_ROOT = "leaderboards"
