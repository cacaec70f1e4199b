"""The package version, in a module of its own so that modules needing it never import ``r2bench`` itself
(whose lazy re-exports reach up into every stage)."""

__version__ = "0.1.0"
