"""Every fix r2bench needs to run RecBole 1.2.1 on today's stack, in one place.

RecBole 1.2.1 (its newest release; its main branch has the same problems) was
written for numpy 1, pandas 1/2, scipy < 1.13 and torch < 2.6, and it assumes it owns
the process. On numpy 2.4, pandas 3.1, scipy 1.17 and torch 2.13 (measured; see
``shared/reference/recbole-notes.md``) these are the breakages and side effects, and
what :func:`recbole_session` does about each. Nothing here runs at ``import r2bench``
or ``import baselines``: the adapter (:mod:`baselines.recbole_models`) enters the
session around ``fit`` and ``score`` only, and every change is undone on exit.

Compatibility fixes
    * numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` (and
      ``np.bool8``); ``Config.compatibility_settings`` reads them and then assigns
      ``np.float``, ``np.int``... -> the aliases are set for the session and numpy's
      namespace is restored afterwards (:func:`numpy_aliases`).
    * scipy >= 1.13 removed ``dok_matrix._update``, which LightGCN (and NGCF, GCMC...)
      call to fill the adjacency matrix -> a one-line equivalent on the storage dict
      (:func:`scipy_dok_update`).
    * ``recbole.quick_start`` imports ray (old numpy names, ``pkg_resources``) -> never
      imported; only ``Config``, ``create_dataset``, ``data_preparation``,
      ``get_model`` and ``get_trainer`` are used, which do not import ray.
    * torch >= 2.6 ``torch.load`` refuses RecBole's checkpoints (they pickle its
      ``Config``) -> checkpoints are never written or read: the adapter keeps the best
      ``state_dict`` in memory.
    * pandas 3 copy-on-write turns ``Dataset._fill_nan``'s ``fillna(inplace=True)``
      into a silent no-op -> the adapter writes atomic files with no missing values
      (:func:`check_complete`) so the code path never matters.

Side effects contained
    * importing ``recbole.model.sequential_recommender`` (``sine.py``) switches on
      autograd anomaly detection for the whole process (about 1.4x slower
      training) -> switched off after the import, the caller's mode restored on exit.
    * ``Config`` parses ``sys.argv`` (``--epochs=99`` on r2bench's command line would
      override our settings) -> ``sys.argv`` is blanked while RecBole runs.
    * ``Config._init_device`` sets ``CUDA_VISIBLE_DEVICES`` unconditionally -> saved
      and restored.
    * ``init_seed`` reseeds the global ``random``, numpy and torch generators and sets
      cuDNN flags -> all saved and restored.
    * RecBole logs through the *root* logger; ``init_logger`` (never called here)
      would create ``./log/`` -> records are captured into a list for the run
      (:class:`LogCapture`) without reaching the caller's handlers.
    * ``Trainer.__init__`` opens a TensorBoard writer under ``./log_tensorboard`` ->
      replaced by a do-nothing writer; ``checkpoint_dir`` points at a temporary folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_MISSING = object()

#: numpy 1 names that RecBole's ``Config.compatibility_settings`` reads.
NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_", "bool8": "bool_"}
#: names that ``Config.compatibility_settings`` then assigns on numpy.
NUMPY_ASSIGNED = ("bool", "int", "float", "complex", "object", "str", "long", "unicode")


@contextlib.contextmanager
def numpy_aliases() -> Iterator[None]:
    """Provide numpy 1 aliases while RecBole runs; leave numpy's namespace as found."""
    names = tuple(NUMPY_ALIASES) + NUMPY_ASSIGNED
    saved = {name: np.__dict__.get(name, _MISSING) for name in names}
    for alias, target in NUMPY_ALIASES.items():
        if saved[alias] is _MISSING:
            setattr(np, alias, getattr(np, target))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                np.__dict__.pop(name, None)
            else:
                np.__dict__[name] = value


@contextlib.contextmanager
def scipy_dok_update() -> Iterator[None]:
    """``dok_matrix._update`` (removed in scipy 1.13) as a plain update of its storage."""
    import scipy.sparse as sp

    cls = sp.dok_matrix
    if hasattr(cls, "_update"):
        yield
        return
    cls._update = lambda self, data: self._dict.update(data)
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            del cls._update


@contextlib.contextmanager
def blank_argv() -> Iterator[None]:
    """Hide the command line from ``Config._load_cmd_line`` (it needs ``argv[0]``)."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "r2bench"]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def preserve_env(name: str) -> Iterator[None]:
    saved = os.environ.get(name)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


@contextlib.contextmanager
def preserve_rng() -> Iterator[None]:
    """Save and restore the global random, numpy and torch generators and cuDNN flags."""
    import torch

    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` intra-op threads (``None``: leave as is), restoring the previous count."""
    import torch

    saved = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def default_threads() -> int:
    """Torch threads for ``threads: 0``: min(2, cores), or 1 on a saturated machine.

    These models are small: beyond 2 OpenMP threads there is no gain, and when the
    cores are already busy (1-minute load >= cores) 2 spinning threads run far slower
    than 1. The thread count does not change what is computed, only how fast.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:  # pragma: no cover - platforms without getloadavg
        busy = False
    return 1 if busy else max(1, min(2, cores))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class LogCapture(logging.Handler):
    """Collects RecBole's log records (ANSI colours stripped) as plain lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(_ANSI.sub("", self.format(record)))
        except Exception:  # pragma: no cover - a log line must never break training
            self.handleError(record)

    def add(self, message: str) -> None:
        """Append a line of the adapter's own (e.g. per-epoch results)."""
        self.emit(logging.LogRecord("r2bench.recbole", logging.INFO, __file__, 0, message, None, None))


def _not_root(record: logging.LogRecord) -> bool:
    return record.name != "root"


@contextlib.contextmanager
def capture_root_log(capture: LogCapture) -> Iterator[None]:
    """Route the root logger's records (RecBole's) to ``capture`` only.

    The root level drops to INFO for the session. The caller's root handlers stop
    seeing records of the root logger itself (RecBole's colour-coded lines) and are
    raised to the previous effective level, so other loggers print exactly what they
    printed before.
    """
    root = logging.getLogger()
    prev_level = root.level
    effective = root.getEffectiveLevel()
    saved = [(h, h.level) for h in root.handlers]
    for h, level in saved:
        h.setLevel(max(level, effective))
        h.addFilter(_not_root)
    root.addHandler(capture)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(capture)
        root.setLevel(prev_level)
        for h, level in saved:
            h.setLevel(level)
            h.removeFilter(_not_root)


class _NullWriter:
    """Stands in for TensorBoard's SummaryWriter: accepts every call, writes nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def no_tensorboard() -> Iterator[None]:
    import recbole.trainer.trainer as trainer_mod

    saved = trainer_mod.get_tensorboard
    trainer_mod.get_tensorboard = lambda logger: _NullWriter()
    try:
        yield
    finally:
        trainer_mod.get_tensorboard = saved


@contextlib.contextmanager
def anomaly_mode(enabled: bool = False) -> Iterator[None]:
    """Import RecBole's models (which switches anomaly detection on), then set ``enabled``.

    The caller's anomaly mode (as it was before RecBole was first imported) comes back
    on exit. ``enabled=True`` reproduces stock RecBole (for ``bench/recbole_epoch.py``).
    """
    import torch

    saved = (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())
    import recbole.model.general_recommender  # noqa: F401
    import recbole.model.sequential_recommender  # noqa: F401  (sine.py: set_detect_anomaly(True))

    torch.autograd.set_detect_anomaly(enabled)
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(saved[0], check_nan=saved[1])


def check_complete(frame: Any, where: str) -> None:
    """Fail if a frame bound for an atomic file has missing values (see pandas 3 note)."""
    if frame.null_count().sum_horizontal().item():
        raise ValueError(f"{where}: RecBole atomic file would contain missing values")


@contextlib.contextmanager
def recbole_warnings(log: LogCapture | None) -> Iterator[None]:
    """Keep RecBole's known warnings (pandas 3 chained ``fillna``, deprecated torch/amp
    calls) off the console; their first lines go to the run's log instead."""
    seen: set[str] = set()
    with warnings.catch_warnings():  # restores showwarning (and the filters) on exit
        shown_elsewhere = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            if "recbole" not in str(filename):
                shown_elsewhere(message, category, filename, lineno, file, line)
                return
            text = f"{category.__name__}: {str(message).splitlines()[0]} ({Path(filename).name}:{lineno})"
            if log is not None and text not in seen:
                seen.add(text)
                log.add(f"warning: {text}")

        warnings.showwarning = show
        yield


@contextlib.contextmanager
def recbole_session(log: LogCapture | None = None, threads: int | None = None, anomaly: bool = False) -> Iterator[None]:
    """Everything above, entered together (order matters: numpy aliases before imports)."""
    from r2bench.extras import require

    require("recbole", purpose="the SASRec/BERT4Rec/LightGCN baselines")
    with contextlib.ExitStack() as stack:
        stack.enter_context(numpy_aliases())
        stack.enter_context(preserve_rng())
        stack.enter_context(preserve_env("CUDA_VISIBLE_DEVICES"))
        stack.enter_context(blank_argv())
        stack.enter_context(torch_threads(threads))
        stack.enter_context(anomaly_mode(anomaly))
        stack.enter_context(scipy_dok_update())
        stack.enter_context(no_tensorboard())
        if log is not None:
            stack.enter_context(capture_root_log(log))
        stack.enter_context(recbole_warnings(log))
        yield


def recbole_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recbole")
    except PackageNotFoundError:  # pragma: no cover - require() fails first
        return "unknown"


def json_safe(value: Any) -> Any:
    """RecBole config values as plain JSON (enums -> names, devices/types -> str)."""
    import enum

    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and not np.isfinite(value):
            return str(value)
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return str(value)
