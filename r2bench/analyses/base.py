"""What an analysis is: the declaration every analysis module makes, and the options they share.

An analysis module defines one :class:`Analysis` as ``ANALYSIS = Analysis(name=..., ...)``;
a module of this package that does is found and registered by
:data:`r2bench.analyses.registry.ANALYSES` without being listed anywhere. The declaration says

- its ``name``, ``title`` and where the paper shows it (``paper``);
- which runs it needs: the unperturbed run of each method (``original``), and the
  perturbed runs, as perturbation specs (``perturbations``) applied by ``transform``
  (the built-in kinds of :mod:`r2bench.analyses.perturb` by default) on the instances
  ``select`` picks;
- how it turns runs into tables (``compute``) and the tables into a PNG (``draw``);
- which piles of runs it can be computed from (``applies``, for ``report --analyses``).

Everything that makes runs, loads them, labels them and writes results is generic
(:mod:`r2bench.analyses.suite`, :mod:`r2bench.analyses.study`), so adding an analysis is
adding one module (and its test); see docs/extending.md, "Add an analysis".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r2bench.analyses import perturb as P
from r2bench.errors import R2BenchError

if TYPE_CHECKING:
    import polars as pl

    from r2bench.analyses.result import AnalysisResult
    from r2bench.data.benchmark import Benchmark
    from r2bench.runs import Run


@dataclass
class Options:
    """Settings shared by the analyses (CLI flags map one to one)."""

    metric: str = "ndcg@10"
    reference: str | None = None  # cold-start improvements: this method over the others (default: best)
    n_bins: int = 4
    fixed_edges: tuple[int, ...] = (0, 5)
    length_edges: tuple[int, ...] = (5, 10, 15, 20)
    positions: tuple[int, ...] = (1, 10, 20)
    n_shuffles: int = 5
    ks: tuple[int, ...] = (1, 5, 10, 15, 20)
    sample_n: int | None = 100
    full_length: int | None = None  # None: the benchmark's history_len
    n_candidate_shuffles: int = 1
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # settings of analyses added outside r2bench


#: ``compute(runs, options, skipped)``: ``skipped`` lists runs the analysis asked for that
#: could not be made, as dicts (transfer: ``{method, train, test, reason}``).
Compute = Callable[["Sequence[Run]", Options, "Sequence[dict]"], "AnalysisResult"]


@dataclass(frozen=True)
class Analysis:
    name: str
    title: str
    paper: str  # where the paper shows it ("Figure 3", "Table 7", "-")
    compute: Compute
    #: ``draw(result, png_path) -> png_path`` from what ``compute`` left in ``result.plot_data``
    #: (usually :func:`plot_with`)
    draw: Callable[["AnalysisResult", Path], Path] | None = None
    #: the unperturbed run per method it needs: "base" (scored on --base-limit instances),
    #: "limit" (on --limit instances, like the perturbed runs) or None
    original: str | None = "base"
    #: ``perturbations(options, benchmark) -> [spec, ...]``: one perturbed run per method and spec
    perturbations: Callable[[Options, "Benchmark"], list[dict[str, Any]]] | None = None
    #: ``transform(instances, spec) -> instances``: applies a spec (same instances, perturbed)
    transform: Callable[["pl.DataFrame", dict[str, Any]], "pl.DataFrame"] = P.apply_perturbation
    #: ``select(instances, spec, limit) -> (spec, instance_ids | None)``: the instances a
    #: perturbed run scores when not the first ``limit`` (spec may gain provenance)
    select: Callable[["pl.DataFrame", dict[str, Any], int | None], tuple[dict[str, Any], list[int] | None]] = \
        P.select_instances
    #: ``applies(runs) -> bool``: can it be computed from these runs (``report --analyses``)?
    applies: Callable[["Sequence[Run]"], bool] | None = None
    #: its own way of making runs (transfer: across several datasets), see ``suite.make_runs``
    make_runs: Callable[..., tuple[list[Path], list[dict]]] | None = None
    several_datasets: bool = False
    #: where it comes in ``r2bench study``'s report and ``report --analyses`` (ascending; then by name)
    order: int = 100

    def supports(self, runs: "Sequence[Run]") -> bool:
        return bool(self.applies(runs)) if self.applies is not None else False


# --- helpers the analyses share --------------------------------------------------------

def plot_with(figure: Callable[..., Path]) -> Callable[["AnalysisResult", Path], Path]:
    """A ``draw`` that calls ``figure(path=png_path, **result.plot_data)``: ``compute`` leaves the
    figure's keyword arguments in ``plot_data``."""

    def draw(result: "AnalysisResult", path: Path) -> Path:
        return figure(path=path, **result.plot_data)

    return draw


def methods_of(runs: "Sequence[Run]") -> dict[str, str]:
    """label -> method, for the figures' colours (one per method, :mod:`r2bench.report.style`)."""
    return {r.label: r.method for r in runs}


def base_runs(runs: "Sequence[Run]") -> "list[Run]":
    """Runs that are neither perturbed nor cross-dataset (the in-domain originals)."""
    return [r for r in runs if r.perturbation is None and r.train_on is None]


def has_kind(*kinds: str) -> Callable[["Sequence[Run]"], bool]:
    """``applies`` for analyses of perturbed runs: some run has one of these perturbation kinds."""
    return lambda runs: any(r.kind in kinds for r in runs)


def one_benchmark_originals(runs: "Sequence[Run]") -> bool:
    """``applies`` for analyses of the original runs: there are some, all on one benchmark."""
    base = base_runs(runs)
    return bool(base) and len({r.fingerprint for r in base}) == 1


def check_same_benchmark(runs: "Sequence[Run]", what: str) -> None:
    fps = {r.fingerprint for r in runs}
    if len(fps) > 1:
        raise R2BenchError(
            f"{what} compares runs on one benchmark, but these runs scored {len(fps)} different benchmarks "
            f"({', '.join(sorted(f[:12] for f in fps))}); pass runs of one dataset"
        )


def full_length_for(benchmark: "Benchmark", opts: Options) -> int:
    """What counts as a full history: ``opts.full_length``, else the benchmark's ``history_len``."""
    if opts.full_length is not None:
        return int(opts.full_length)
    return int(benchmark.manifest.get("spec", {}).get("history_len", 20))
