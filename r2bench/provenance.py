"""Provenance recorded in every run and manifest: versions, git commit, hardware."""

from __future__ import annotations

import os
import re
import platform
import subprocess
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = (
    "r2bench", "numpy", "polars", "pyarrow", "pandas", "scipy", "torch", "transformers",
    "peft", "accelerate", "recbole", "openai", "matplotlib",
)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the r2bench checkout (None for an installed wheel or no git)."""
    where = Path(path) if path else Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=5,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def hardware() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or None,
    }
    import sys

    if "torch" in sys.modules:  # only report the GPU when torch is already in use
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                info["gpu"] = torch.cuda.get_device_name(0)
                info["gpu_count"] = torch.cuda.device_count()
        except Exception:  # noqa: BLE001 - provenance must never fail a run
            pass
    return info


# --- commands as typed ------------------------------------------------------------------

_PLAIN = re.compile(r"[\w@%+=:,./-][\w@%+=:,./~-]*")  # one shell word needing no quotes (no leading ~)
_DOUBLE_UNSAFE = re.compile(r'["\\$`!]')  # characters a double-quoted word would expand or end on


def quote_word(word: str) -> str:
    """One argument as a person would type it: bare when the shell needs no quotes, in
    single quotes, or in double quotes when it holds a single quote (``"users' sequences"``);
    ``shlex.quote`` only for the rare word holding both kinds of quotes or ``$ ` \\ !``.
    The result is always a valid shell word for the same text."""
    import shlex

    if word and _PLAIN.fullmatch(word):
        return word
    if "'" not in word:
        return f"'{word}'"
    if not _DOUBLE_UNSAFE.search(word):
        return f'"{word}"'
    return shlex.quote(word)


def command_line(argv: list[str], program: str = "r2bench") -> str:
    """``program`` and its arguments, quoted readably (:func:`quote_word`): what runs and
    leaderboard entries record as their command, and what can be pasted back into a shell."""
    return " ".join([program, *(quote_word(str(a)) for a in argv)])


def readable_command(text: str | None) -> str | None:
    """A recorded shell command (``r2bench ...``) re-quoted readably (``'users'"'"' sequences'``
    becomes ``"users' sequences"``); anything else (a library call such as
    ``r2bench.pipeline.run_method(...)``, text the shell could not split) as it is."""
    import shlex

    if not text or not text.startswith("r2bench ") or not any(q in text for q in "'\"\\"):
        return text
    try:
        words = shlex.split(text)
    except ValueError:
        return text
    return " ".join(quote_word(w) for w in words) if words else text
