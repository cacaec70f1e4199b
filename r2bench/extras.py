"""Lazy access to optional heavy stacks (torch, transformers, recbole, openai, matplotlib).

``import r2bench`` never imports them; code that needs one calls ``require`` at the
point of use, which turns an ImportError into a one-line ``MissingExtraError`` that
names the ``pip install 'r2bench[extra]'`` that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from r2bench.errors import MissingExtraError

# module -> extra that provides it
EXTRA_OF: dict[str, str] = {
    "torch": "train",
    "transformers": "train",
    "peft": "train",
    "accelerate": "train",
    "safetensors": "train",
    "gguf": "train",
    "recbole": "recbole",
    "openai": "llm",
    "httpx": "llm",
    "matplotlib": "plot",
    "llama_cpp": "serve",
}


def require(module: str, purpose: str = "", extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise a MissingExtraError naming the extra that installs it."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Only translate "this package is absent"; a broken install keeps its real error.
        if importlib.util.find_spec(top) is not None and not isinstance(exc, ModuleNotFoundError):
            raise
        if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] != top:
            raise
        raise MissingExtraError(top, extra or EXTRA_OF.get(top, "all"), purpose) from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
