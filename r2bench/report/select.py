"""Which runs a report or an analysis shows, and which of them are compared with which.

Any pile of runs (run folders, run ids, folders of runs) goes through :func:`select_runs`:

1. filters: ``methods`` (method names) and ``labels`` (a run's ``--label``, or its method
   plus the config keys that differ from the defaults, with or without ``seed=S``);
2. ``latest``: the newest run per setting (benchmark, split, instance set, method,
   config, seed, ``--label``, training benchmark, perturbation); older ones are left out;
3. groups: one per :func:`r2bench.runs.comparison_key` (dataset, fingerprint, split and
   the set of scored instances), so ``--limit`` runs and sampled runs form their own
   comparisons instead of stopping the report;
4. duplicates: runs of one method (and perturbation, training benchmark) with identical
   scores are shown once, the newest, with a note naming the others;
5. labels: :func:`r2bench.runs.run_labels` over everything selected (one labelling for the
   tables, the analyses and the plots), runs ordered as the tables order methods.

Runs made before ``run.json`` recorded ``config_changes`` get them from the method's
registered defaults here (in memory only), so their labels say what differs too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2bench.errors import R2BenchError
from r2bench.report.tables import method_rank
from r2bench.runs import Run, comparison_key, label_runs, load_runs


def _js(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class RunGroup:
    """Runs compared with each other: one benchmark, split and set of scored instances."""

    key: tuple[str, str, str, str]
    runs: list[Run]
    instances: str = ""  # "all 95 instances", "first 3 instances (--limit 3)", "a chosen sample of 91 instances"
    full: bool = False  # the whole split
    tag: str = ""  # " [<fingerprint>]" when the selection holds several benchmarks of the dataset
    slug: str = ""  # a file-name-safe id (sub-folders of analyses with several groups)
    notes: list[str] = field(default_factory=list)

    @property
    def dataset(self) -> str:
        return self.key[0]

    @property
    def split(self) -> str:
        return self.key[2]

    @property
    def column(self) -> str:
        """The table column / plot panel name: the dataset (+ fingerprint, split when not test)."""
        return f"{self.dataset}{self.tag}" + (f" {self.split}" if self.split != "test" else "")

    @property
    def title(self) -> str:
        return f"{self.dataset}{self.tag} {self.split}, {self.instances}"

    @property
    def originals(self) -> list[Run]:
        """The unperturbed runs (the report's comparison; transfer runs included)."""
        return [r for r in self.runs if r.perturbation is None]


@dataclass
class Selection:
    groups: list[RunGroup]
    left_out: list[str] = field(default_factory=list)  # what the filters, --latest and de-duplication removed

    @property
    def runs(self) -> list[Run]:
        return [r for g in self.groups for r in g.runs]

    def group_of(self, run: Run) -> RunGroup:
        return next(g for g in self.groups if any(r is run for r in g.runs))

    def summary_lines(self) -> list[str]:
        """What went where, one line per comparison, then what was left out."""
        n = len(self.runs)
        if len(self.groups) == 1 and not self.left_out and not self.groups[0].notes:
            g = self.groups[0]
            what = ", ".join(dict.fromkeys(r.label for r in g.originals))
            pert = len(g.runs) - len(g.originals)
            return [f"{_plural(len(g.originals), 'run')} compared on {g.title} ({what})"
                    + (f", {_plural(pert, 'perturbed run')} for the analyses" if pert else "") + "."]
        word = "comparison" if all(g.originals for g in self.groups) else "group"
        lines = [f"{_plural(n, 'run')} in {_plural(len(self.groups), word)} "
                 f"(one per benchmark, split and set of scored instances):"]
        for g in self.groups:
            pert = len(g.runs) - len(g.originals)
            what = ", ".join(dict.fromkeys(r.label for r in g.originals))
            extra = f" + {_plural(pert, 'perturbed run')}" if pert else ""
            if g.originals:
                lines.append(f"- {g.title}: {_plural(len(g.originals), 'run')}{extra} ({what})")
            else:
                lines.append(f"- {g.title}: {_plural(pert, 'perturbed run')} (for the analyses)")
            lines += [f"  - {n}" for n in g.notes]
        lines += [f"- {x}" for x in self.left_out]
        return lines

    def summary(self) -> str:
        return "\n".join(self.summary_lines())


def _matches(run: Run, wanted: set[str]) -> bool:
    names = {run.base_label, f"{run.base_label} seed={run.meta.get('seed')}"}
    if run.meta.get("label"):
        names.add(str(run.meta["label"]))
    return bool(names & wanted)


def _split_list(values: Iterable[str] | None) -> list[str]:
    return [v.strip() for item in (values or ()) for v in str(item).split(",") if v.strip()]


def fill_config_changes(runs: Sequence[Run]) -> None:
    """For runs that recorded no ``config_changes``: compute them from the registered method's
    defaults (in memory; unknown methods keep None and are labelled by :func:`run_labels`)."""
    from r2bench.pipeline import config_changes, method_defaults

    cache: dict[str, dict | None] = {}
    for r in runs:
        if "config_changes" not in r.meta:
            if r.method not in cache:
                d = method_defaults(r.method)
                cache[r.method] = None if d is None else json.loads(_js(d))
            r.meta["config_changes"] = config_changes(r.meta.get("config") or {}, cache[r.method])


def _setting(r: Run) -> str:
    return _js([comparison_key(r), r.method, r.meta.get("config"), r.meta.get("seed"), r.meta.get("label"),
                r.train_on, r.perturbation])


def _newest(runs: Sequence[Run]) -> Run:
    return max(runs, key=lambda r: r.created_order)


def _describe(runs: Sequence[Run]) -> tuple[str, bool]:
    n = len(runs[0].instance_ids)
    if any(r.limit is None and r.scored_instance_ids is None for r in runs):
        return f"all {n} instances", True
    if any(r.scored_instance_ids is not None for r in runs):
        return f"a chosen sample of {n} instances", False
    limits = sorted({int(r.limit) for r in runs if r.limit is not None})
    return f"first {n} instances (--limit {'/'.join(map(str, limits))})", False


def _dedupe(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """Runs of one method and config (``--label``, perturbation, training benchmark; the seed
    may differ) with identical scores: the newest stays. Other configs stay even when their
    scores tie (a truncated history can make two configs agree on one perturbation)."""
    by_kind: dict[str, list[Run]] = {}
    for r in runs:
        by_kind.setdefault(_js([r.method, r.meta.get("config"), r.meta.get("label"), r.perturbation, r.train_on]),
                           []).append(r)
    drop: set[int] = set()
    notes = []
    perturbed: dict[str, list[Run]] = {}  # per method: the perturbed copies left out (one note each)
    for same in by_kind.values():
        if len(same) < 2:
            continue
        by_scores: dict[str, list[Run]] = {}
        for r in same:
            by_scores.setdefault(r.scores_digest, []).append(r)
        for dupes in by_scores.values():
            if len(dupes) > 1:
                keep = _newest(dupes)
                others = [r for r in dupes if r is not keep]
                drop.update(id(r) for r in others)
                if keep.perturbation:
                    perturbed.setdefault(keep.method, []).extend(others)
                else:
                    seeds = {str(r.meta.get("seed")) for r in dupes}
                    name = keep.base_label + (f" (seed {seeds.pop()})" if len(seeds) == 1 else "")
                    notes.append(f"{name}: {len(dupes)} runs with identical scores, shown once "
                                 f"({keep.run_id}); the same scores: {', '.join(r.run_id for r in others)}")
    for method, others in perturbed.items():
        notes.append(f"{method}: {_plural(len(others), 'perturbed run')} left out as identical to a newer run "
                     f"of the same perturbation: {', '.join(r.run_id for r in others)}")
    return [r for r in runs if id(r) not in drop], notes


def _natural(text: str) -> tuple:
    """``window=3`` before ``window=10``: numbers in a label compare as numbers."""
    return tuple((0, float(p), "") if re.fullmatch(r"\d+(\.\d+)?", p) else (1, 0.0, p)
                 for p in re.split(r"(\d+(?:\.\d+)?)", text) if p)


def _order(r: Run) -> tuple:
    seed = r.meta.get("seed")
    return (*method_rank(r.method), _natural(r.base_label), seed if isinstance(seed, int) else 0,
            _js(r.perturbation), r.created_order)


def select_runs(items: Iterable[str | Path | Run], *, latest: bool = False, methods: Iterable[str] | None = None,
                labels: Iterable[str] | None = None) -> Selection:
    """Group, filter and label any pile of runs (see the module docstring)."""
    items = list(items)
    runs = [i for i in items if isinstance(i, Run)]
    paths = [i for i in items if not isinstance(i, Run)]
    if paths:
        runs += load_runs(paths)
    if not runs:
        raise R2BenchError("no runs given")
    fill_config_changes(runs)
    left_out: list[str] = []
    want_m, want_l = set(_split_list(methods)), set(_split_list(labels))
    if want_m or want_l:
        kept = [r for r in runs if (not want_m or r.method in want_m) and (not want_l or _matches(r, want_l))]
        if not kept:
            raise R2BenchError(
                "no run matches " + " and ".join(
                    x for x in (f"--method {', '.join(sorted(want_m))}" * bool(want_m),
                                f"--label {', '.join(sorted(want_l))}" * bool(want_l)) if x)
                + f"; the runs given have methods {', '.join(sorted({r.method for r in runs}))} and labels "
                + ", ".join(sorted({r.base_label for r in runs})))
        unmatched = sorted(want_m - {r.method for r in kept}) + sorted(
            w for w in want_l if not any(_matches(r, {w}) for r in kept))
        left_out.append(f"left out by --method/--label: {_plural(len(runs) - len(kept), 'run')}"
                        + (f"; nothing matched {', '.join(unmatched)}" if unmatched else ""))
        runs = kept
    if latest:
        newest: dict[str, Run] = {}
        for r in runs:
            k = _setting(r)
            newest[k] = _newest([newest[k], r]) if k in newest else r
        older = [r for r in runs if newest[_setting(r)] is not r]
        if older:
            left_out.append(f"left out by --latest (an older run of the same settings): "
                            f"{', '.join(r.run_id for r in older)}")
        runs = [r for r in runs if newest[_setting(r)] is r]
    by_key: dict[tuple, list[Run]] = {}
    for r in runs:
        by_key.setdefault(comparison_key(r), []).append(r)
    groups = []
    for key, members in by_key.items():
        members, notes = _dedupe(members)
        instances, full = _describe(members)
        groups.append(RunGroup(key, sorted(members, key=_order), instances, full, notes=notes))
    fps: dict[str, set[str]] = {}
    for g in groups:
        fps.setdefault(g.dataset, set()).add(g.key[1])
    slugs: set[str] = set()
    for g in groups:
        fp = f" [{g.key[1][:8]}]" if len(fps[g.dataset]) > 1 else ""
        g.tag = fp
        kind = "all" if g.full else ("sample" if "sample" in g.instances else "first")
        slug = f"{g.dataset}-{g.split}-{kind}{len(g.runs[0].instance_ids)}" + (f"-{g.key[1][:8]}" if fp else "")
        g.slug = slug if slug not in slugs else f"{slug}-{g.key[3][:6]}"
        slugs.add(g.slug)
        if len(g.originals) == 1:
            g.notes.append("a single run: shown without a significance test")
    # the whole split first, then by dataset and size; the order of the tables and the panels
    groups.sort(key=lambda g: (not g.full, g.dataset, g.split, -len(g.runs[0].instance_ids), g.slug))
    sel = Selection(groups, left_out)
    label_runs(sel.runs)
    return sel
