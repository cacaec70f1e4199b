"""Leaderboards: validated submissions, recomputed scores, rendered boards.

Layout (in the repository, grown by pull requests that CI validates)::

    leaderboards/
      README.md                     overview of all boards (rendered)
      <dataset>/board.json          the canonical benchmark: fingerprint + test instances (board.py)
      <dataset>/entries/<slug>.json one submission each (schema.py)
      <dataset>/README.md           the ranked table (rendered, render.py)
      <dataset>/index.html          the same table + a plot, self-contained (rendered)

Modules: ``safety`` (slugs, allowed names/URLs, Markdown/HTML escaping), ``board``,
``schema`` (entry format, score encoding), ``scoring`` (metrics recomputed from the
scores, ranking, CI, significance), ``validate`` (CI checks), ``submit`` (run ->
entry), ``render``.
"""

DEFAULT_ROOT = "leaderboards"
