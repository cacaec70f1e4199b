"""LLM baselines behind any OpenAI-compatible endpoint: listwise, pointwise, reflective.

All three are zero-shot (``fit`` does nothing), take the client settings of
``r2bench.llm.config.ClientConfig`` plus their own, and accept
``candidate_order``: ``given`` (the instance's stored order, which the analyses
perturb), ``shuffled`` (seeded by ``--seed`` and the instance id) or ``reversed``.
Scores always come back aligned with ``instances["candidates"]``.

Every answer is kept in the run's ``responses`` table (instance_id, item_id
(null for listwise), prompt_hash = the cache key, answer, reasoning,
finish_reason, tokens, latency, cached, ok, error, parse) and ``info()`` reports
client usage/cost, failures and the parse statistics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from r2bench.llm.config import ClientConfig
from r2bench.methods import BaseMethod

if TYPE_CHECKING:
    import polars as pl

    from r2bench.data.benchmark import Benchmark
    from r2bench.llm.client import LLMClient
    from r2bench.llm.usage import CallResult

CandidateOrder = Literal["given", "shuffled", "reversed"]


@dataclass
class _LLMMethodConfig(ClientConfig):
    #: order in which candidates are presented (the analyses perturb the "given" order)
    candidate_order: CandidateOrder = "given"


@dataclass
class ListwiseConfig(_LLMMethodConfig):
    max_tokens: int = 2048
    #: constrain the answer to K identifiers joined by " > ": none | regex (vLLM's ``structured_outputs``)
    #: | json_schema (OpenAI's ``response_format``: vLLM, llama.cpp, OpenAI, SGLang)
    structured_output: Literal["none", "regex", "json_schema"] = "none"
    #: word budget of each candidate's line (20 of them share the prompt)
    candidate_words: int = 30
    #: difflib ratio needed to accept a fuzzy title match
    fuzzy_cutoff: float = 0.85


@dataclass
class PointwiseConfig(_LLMMethodConfig):
    max_tokens: int = 4
    #: ask for logprobs (score = logprob(Yes) - logprob(No)); off: parse the answer only
    logprobs: bool = True
    top_logprobs: int = 20


@dataclass
class ReflectiveConfig(_LLMMethodConfig):
    max_tokens: int = 1024
    logprobs: bool = True
    top_logprobs: int = 5
    #: decide without the three-part reasoning (the paper's "without CoT" prompt)
    no_cot: bool = False


def presentation_order(order: str, k: int, seed: int, instance_id: int) -> np.ndarray:
    """``perm`` such that the j-th presented candidate is ``candidates[perm[j]]``."""
    if order == "given":
        return np.arange(k)
    if order == "reversed":
        return np.arange(k)[::-1].copy()
    if order == "shuffled":
        return np.random.default_rng([int(seed), int(instance_id) & 0x7FFFFFFF]).permutation(k)
    from r2bench.errors import R2BenchError

    raise R2BenchError(f"candidate_order must be given, shuffled or reversed; got {order!r}")


class _LLMMethod(BaseMethod):
    """Shared plumbing: the client, prompt contexts, the responses table, info()."""

    Config: ClassVar[type] = ClientConfig
    transferable: ClassVar[bool] = True

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        self._client: LLMClient | None = None
        self._rows: list[dict[str, Any]] = []
        self._parse: Counter[str] = Counter()

    @property
    def client(self) -> "LLMClient":
        if self._client is None:
            from r2bench.extras import require

            require("openai", purpose=f"method {self.name!r}")
            from r2bench.llm.client import LLMClient

            self._client = LLMClient(self.config, seed=self.seed)
        return self._client

    def _prompts(self, benchmark: "Benchmark", instances: "pl.DataFrame", **kw: Any) -> list[Any]:
        from r2bench.lm.prompts import instance_prompt

        records = benchmark.item_records()
        return [
            instance_prompt(row, records, benchmark.profile_fields, **kw)
            for row in instances.iter_rows(named=True)
        ]

    def _perm(self, instance_id: int, k: int) -> np.ndarray:
        return presentation_order(self.config.candidate_order, k, self.seed, instance_id)

    def _record(self, instance_id: int, item_id: str | None, res: "CallResult", parse: str, score: float | None) -> None:
        self._rows.append({
            "instance_id": int(instance_id), "item_id": item_id, "prompt_hash": res.key,
            "answer": res.answer, "reasoning": res.reasoning, "finish_reason": res.finish_reason,
            "prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
            "reasoning_tokens": res.reasoning_tokens, "latency_s": float(res.latency_s),
            "cached": res.cached, "ok": res.ok, "error": res.error, "parse": parse,
            "score": None if score is None else float(score),
        })

    def artifacts(self) -> dict[str, "pl.DataFrame"]:
        import polars as pl

        if not self._rows:
            return {}
        schema = {
            "instance_id": pl.Int64, "item_id": pl.Utf8, "prompt_hash": pl.Utf8, "answer": pl.Utf8,
            "reasoning": pl.Utf8, "finish_reason": pl.Utf8, "prompt_tokens": pl.Int64,
            "completion_tokens": pl.Int64, "reasoning_tokens": pl.Int64, "latency_s": pl.Float64,
            "cached": pl.Boolean, "ok": pl.Boolean, "error": pl.Utf8, "parse": pl.Utf8, "score": pl.Float64,
        }
        return {"responses": pl.DataFrame(self._rows, schema=schema, orient="row")}

    #: parse outcomes that still give a usable score (per-candidate methods)
    _usable: ClassVar[tuple[str, ...]] = ("logprob", "answer")

    def info(self) -> dict[str, Any]:
        """``llm`` (client usage), ``usage`` (tokens, cost), ``failures`` by kind, and ``parse``:
        ``valid`` / ``partial`` / ``unusable`` shares (what ``r2bench report`` shows) and raw counts."""
        out: dict[str, Any] = {"llm": {"model": self.config.model, "base_url": self.config.base_url}}
        if self._client is not None:
            usage = self._client.usage()
            out["llm"].update(usage)
            out["usage"] = {
                k: usage[k] for k in ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cost", "cost_without_cache")
                if k in usage
            }
            out["usage"]["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            out["failures"] = usage["failures"]
        total = sum(self._parse.values())
        if total:
            shares = self._validity_shares(total)
            out["parse"] = {**shares, "counts": dict(sorted(self._parse.items()))}
        return out

    def _validity_shares(self, total: int) -> dict[str, float]:
        usable = sum(self._parse.get(k, 0) for k in self._usable)
        shares = {"valid": usable / total, "partial": 0.0, "unusable": 1.0 - usable / total}
        shares.update({f"{k}_share": v / total for k, v in sorted(self._parse.items())})
        return shares


class ListwiseMethod(_LLMMethod):
    """One request per instance: rank all candidates (the paper's DeepSeek-R1 protocol).

    Ranked candidates score ``K - rank``; those the answer leaves out share 0, the
    lowest score, so the evaluator's tie rule gives them their expected rank. A
    failed or unusable answer leaves the whole instance tied.
    """

    name = "llm-listwise"
    Config = ListwiseConfig
    pointwise = False

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        self._details: Counter[str] = Counter()

    def score(self, benchmark: "Benchmark", instances: "pl.DataFrame") -> np.ndarray:
        from baselines.llm_prompts import listwise_messages
        from r2bench.llm.parse import parse_ranking, ranking_scores
        from r2bench.lm.prompts import render_item

        cfg = self.config
        records = benchmark.item_records()
        prompts = self._prompts(benchmark, instances)
        perms, requests, titles = [], [], []
        for p in prompts:
            perm = self._perm(p.instance_id, len(p.candidates))
            texts = [
                render_item(records.get(p.candidates[j]), field_words=8, max_words=cfg.candidate_words)
                for j in perm
            ]
            perms.append(perm)
            titles.append([(records.get(p.candidates[j]) or {}).get("title") or "" for j in perm])
            requests.append(self.client.request(listwise_messages(p.context, texts), **self._constraint(len(perm))))
        results = self.client.run_batch(requests, desc=f"{self.name} requests")
        scores = np.zeros((len(prompts), max((len(p.candidates) for p in prompts), default=0)), dtype=np.float64)
        for i, (p, perm, res) in enumerate(zip(prompts, perms, results)):
            parsed = parse_ranking(res.answer, titles[i], cfg.fuzzy_cutoff)
            presented = ranking_scores(parsed.order, len(perm))
            row = np.zeros(len(perm))
            row[perm] = presented  # back to the stored candidate order
            scores[i, : len(perm)] = row
            status = parsed.status
            self._parse[status] += 1
            self._parse_details(parsed)
            self._record(p.instance_id, None, res, status, None)
        return scores

    def _constraint(self, k: int) -> dict[str, Any]:
        """The request fields that constrain the answer to ``k`` identifiers (``structured_output``)."""
        from baselines.llm_prompts import listwise_json_schema, listwise_regex

        how = self.config.structured_output
        if how == "regex":
            return {"extra_body": {"structured_outputs": {"regex": listwise_regex(k)}}}
        if how == "json_schema":
            schema = {"name": "ranking", "schema": listwise_json_schema(k), "strict": True}
            return {"response_format": {"type": "json_schema", "json_schema": schema}}
        if how != "none":
            from r2bench.errors import R2BenchError

            raise R2BenchError(f"structured_output must be none, regex or json_schema; got {how!r}")
        return {}

    def _parse_details(self, parsed: Any) -> None:
        for key in ("by_id", "by_title", "by_fuzzy", "duplicates", "hallucinated"):
            self._details[key] += getattr(parsed, key)

    def _validity_shares(self, total: int) -> dict[str, float]:
        return {k: self._parse.get(k, 0) / total for k in ("valid", "partial", "unusable")}

    def info(self) -> dict[str, Any]:
        out = super().info()
        if "parse" in out:
            out["parse"]["matched"] = dict(self._details)
        return out


class _PerCandidateMethod(_LLMMethod):
    """One request per (instance, candidate), sent in the order ``candidate_order`` gives."""

    def _messages(self, prompt: Any, j: int) -> list[dict[str, str]]:
        raise NotImplementedError

    def _score_one(self, res: "CallResult") -> tuple[float, str]:
        raise NotImplementedError

    def _request_kw(self) -> dict[str, Any]:
        cfg = self.config
        return {"logprobs": cfg.logprobs, "top_logprobs": cfg.top_logprobs if cfg.logprobs else None}

    def score(self, benchmark: "Benchmark", instances: "pl.DataFrame") -> np.ndarray:
        prompts = self._prompts(benchmark, instances, **self._prompt_kw())
        slots, requests = [], []
        for i, p in enumerate(prompts):
            for j in self._perm(p.instance_id, len(p.candidates)):
                slots.append((i, int(j)))
                requests.append(self.client.request(self._messages(p, int(j)), **self._request_kw()))
        results = self.client.run_batch(requests, desc=f"{self.name} requests")
        scores = np.zeros((len(prompts), max((len(p.candidates) for p in prompts), default=0)), dtype=np.float64)
        for (i, j), res in zip(slots, results):
            value, source = self._score_one(res)
            scores[i, j] = value
            self._parse[source] += 1
            self._record(prompts[i].instance_id, prompts[i].candidates[j], res, source, value)
        return scores

    def _prompt_kw(self) -> dict[str, Any]:
        return {}


class PointwiseMethod(_PerCandidateMethod):
    """A yes/no question per candidate (TALLRec / Prompt4NR style); score = logprob(Yes) - logprob(No),
    or +1 / -1 from the answer when the server returns no logprobs (ties go to the evaluator)."""

    name = "llm-pointwise"
    Config = PointwiseConfig
    pointwise = True

    def _messages(self, prompt: Any, j: int) -> list[dict[str, str]]:
        from baselines.llm_prompts import pointwise_messages

        return pointwise_messages(prompt.context, prompt.item_texts[j])

    def _score_one(self, res: "CallResult") -> tuple[float, str]:
        from r2bench.llm.parse import yes_no_score

        return yes_no_score(res.answer, res.logprobs)


class ReflectiveMethod(_PerCandidateMethod):
    """The paper's self-reflective template (Figure 2), zero-shot, one request per candidate.

    Score = logP(Recommend) - logP(Not) at the decision token where logprobs are
    returned, else +1 / -1 from ``<answer>...</answer>``, else 0 (parse = "none").
    """

    name = "llm-reflective"
    Config = ReflectiveConfig
    pointwise = True

    def _prompt_kw(self) -> dict[str, Any]:
        return {"no_cot": self.config.no_cot}

    def _messages(self, prompt: Any, j: int) -> list[dict[str, str]]:
        return prompt.messages(j)

    def _score_one(self, res: "CallResult") -> tuple[float, str]:
        from r2bench.llm.parse import decision_score

        value, _decision, source = decision_score(res.answer, res.logprobs)
        return value, source
