"""CLI verbs, one module each (see r2bench.cli)."""
