"""Evaluation: per-instance metrics with exact tie handling (``metrics``), run validation
(``validate``), the evaluator (``evaluate``) and paired significance (``significance``)."""
