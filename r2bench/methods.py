"""The method protocol and the method registry.

A method is anything with

- a typed ``Config`` dataclass (defaults = sensible settings),
- ``__init__(config, seed)``,
- ``fit(benchmark)``: learn from the benchmark's **train** instances (and val, for
  early stopping only); may do nothing,
- ``score(benchmark, instances) -> np.ndarray[n, K]``: a finite score for each
  candidate of each instance, aligned with ``instances["candidates"]``; higher is
  better. ``benchmark`` is the one being scored (it differs from the fitted one in
  cross-dataset transfer).

Optional: ``artifacts()`` returns extra tables to store in the run
(e.g. ``{"rationales": df}``), ``info()`` returns a dict merged into ``run.json``
(token usage, failures, parse statistics...). ``transferable`` says whether
``fit`` on one benchmark and ``score`` on another makes sense.

Third-party methods register through the ``r2bench.methods`` entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from r2bench.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from r2bench.data.benchmark import Benchmark


@dataclass
class EmptyConfig:
    """For methods without settings."""


class BaseMethod:
    """Convenience base class; subclasses set ``name``, ``Config`` and implement ``score``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = EmptyConfig
    transferable: ClassVar[bool] = True
    #: True for methods that score each candidate independently of the others
    #: (the analyses check that their scores do not move with candidate order).
    pointwise: ClassVar[bool] = True
    #: True for methods whose scores depend on item ids learned in fit: they cannot
    #: tell apart items they never saw (cross-dataset transfer is refused when no item overlaps).
    id_based: ClassVar[bool] = False

    def __init__(self, config: Any = None, seed: int = 0):
        self.config = config if config is not None else self.Config()
        self.seed = seed

    def fit(self, benchmark: "Benchmark") -> None:
        return None

    def score(self, benchmark: "Benchmark", instances: "pl.DataFrame") -> "np.ndarray":
        raise NotImplementedError

    def artifacts(self) -> dict[str, "pl.DataFrame"]:
        return {}

    def info(self) -> dict[str, Any]:
        return {}


METHODS: Registry = Registry("method", entry_point_group="r2bench.methods")

_R = METHODS.register
_R("random", "baselines.sanity:RandomMethod", "seeded uniform random scores (the chance line)")
_R("popularity", "baselines.sanity:PopularityMethod", "how often each item is a positive in train instances")
_R("item-cooccurrence", "baselines.sanity:ItemCooccurrenceMethod",
   "co-occurrence of a candidate with the history items in train users' sequences")
_R("sasrec", "baselines.recbole_models:SASRecMethod", "SASRec (RecBole 1.2.1)", extra="recbole")
_R("bert4rec", "baselines.recbole_models:BERT4RecMethod", "BERT4Rec (RecBole 1.2.1)", extra="recbole")
_R("lightgcn", "baselines.recbole_models:LightGCNMethod", "LightGCN (RecBole 1.2.1), val/test histories folded in", extra="recbole")
_R("llm-listwise", "baselines.llm_api:ListwiseMethod",
   "an LLM behind an OpenAI-compatible API ranks all 20 candidates (the paper's DeepSeek-R1 protocol)", extra="llm")
_R("llm-pointwise", "baselines.llm_api:PointwiseMethod",
   "one yes/no question per (user, candidate), score = logprob(Yes) - logprob(No)", extra="llm")
_R("llm-reflective", "baselines.llm_api:ReflectiveMethod",
   "the paper's self-reflective template, zero-shot, one request per candidate", extra="llm")
_R("r2rank", "r2bench.r2rank.method:R2RankMethod",
   "Reasoning to Rank: per-candidate reasoning + scoring head (local HF causal LM)", extra="train")
_R("tallrec", "baselines.tallrec:TALLRecMethod",
   "TALLRec: LoRA-tuned yes/no scoring on the same backbone", extra="train")
_R("prompt4nr", "baselines.prompt4nr:Prompt4NRMethod",
   "Prompt4NR: cloze-prompt fine-tuning (relevance/emotion/action/utility templates) on the same backbone",
   extra="train")
_R("r2ec", "baselines.r2ec:R2ecMethod",
   "R2ec: a reasoning LLM whose <answer> state is matched to LLM item embeddings, trained by RecPO",
   extra="train")
del _R


def method_class(name: str) -> type:
    """The class registered under ``name`` (imports its module)."""
    entry = METHODS.get(name)
    try:
        return entry.load()
    except ModuleNotFoundError as exc:
        from r2bench.errors import MissingExtraError
        from r2bench.extras import EXTRA_OF

        top = (exc.name or "").split(".")[0]
        if top in EXTRA_OF:
            raise MissingExtraError(top, EXTRA_OF[top], f"method {name!r}") from exc
        raise
