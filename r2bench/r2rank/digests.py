"""Digests of model weights, and the response-cache scope of reasonings served from them.

Kept apart from ``features`` and ``method`` (which both need them) so neither imports the other for it.
"""

from __future__ import annotations

from pathlib import Path

from r2bench.atomic import canonical_json, sha256_file, sha256_text
from r2bench.errors import R2BenchError


def weights_digest(folder: str | Path) -> str:
    """sha256 over a model or adapter folder's config and weight files (names and contents)."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and (
        p.suffix in (".safetensors", ".bin") or p.name in ("config.json", "adapter_config.json")))
    if not names:
        raise R2BenchError(f"{folder}: no config or weight files to fingerprint")
    return sha256_text(canonical_json({n: sha256_file(folder / n) for n in names}))


def served_weights_scope(backbone_digest: str, adapter_digest: str | None = None) -> str:
    """The response cache's scope for reasonings served from these weights.

    A served model's name says nothing of its weights (``r2bench serve-local`` serves every local
    folder as "smollm2"), so the reasonings of one model must never answer another's requests."""
    return f"weights:{backbone_digest}" + (f"+adapter:{adapter_digest}" if adapter_digest else "")
