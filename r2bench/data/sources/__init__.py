"""Dataset sources: each reads raw files into the builder's common schema (see base.Source)."""
