"""User-facing errors.

Every error a user can cause (bad input, unknown names, missing extras) is an
``R2BenchError``: the CLI prints its message on one line and exits with status 2,
without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class R2BenchError(Exception):
    """An error caused by the user's input or environment, with a message that says how to fix it."""


class DataError(R2BenchError):
    """Raw or prepared data is malformed; the message names the file, the record and what was expected."""


class RunValidationError(R2BenchError):
    """A run does not match its benchmark (missing instances, wrong candidates, non-finite scores...)."""


class MissingExtraError(R2BenchError, ImportError):
    """An optional dependency stack is not installed."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        self.package = package
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        fix = f"pip install 'r2bench[{extra}]'"
        if extra == "serve":  # built from source: the portable build is the one that runs on any x86-64 VM
            fix = f"bash scripts/install_llama_cpp.sh (a portable build; {fix} builds for this CPU only)"
        super().__init__(f"{package} is not installed{what}: {fix}")
