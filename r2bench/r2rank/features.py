"""Frozen-feature cache: the decision states of a frozen R2Rank backbone, computed once.

When the LLM is frozen (the ``mlp-only`` ablation, with or without CoT), the hidden
state that the scoring head reads at the decision position depends only on the
backbone, the adapter, the prompt, the reasoning and the generation settings, never on
the head. So each ``(instance, candidate, reasoning sample)`` state is computed once,
with exactly the code path of ``r2bench run --method r2rank``
(:func:`r2bench.r2rank.inference.reason_and_decide` on the prompts of
:func:`r2bench.lm.prompts.instance_prompt`), and the head is then trained on the
cache for as many epochs as it takes (``r2bench.r2rank.head_training``).

Layout: ``<features_dir>/<split>-<key hash>/`` holds ``key.json`` (what the states
depend on: the backbone's and the adapter's weight digests, the prompt template, the
generation settings, the benchmark fingerprint, the split and the instance selection)
and shards ``shard-NNNNN.safetensors`` of ``shard_size`` instances each:

- ``hidden`` float32 ``[n, S, K, H]``: the decision states (S reasoning samples);
- ``margin`` float32 ``[n, S, K]``: the zero-shot margin at the same position;
- ``finished`` uint8 / ``n_tokens`` int32 ``[n, S, K]``: whether each reasoning reached
  ``</answer>`` and its length;
- ``instance_id`` / ``target_index`` int64 ``[n]``;

with metadata naming the key hash and the sha256 of the shard's prompt token ids.

Sampled reasonings (CoT train states) use one generator per (seed, instance, sample),
so a shard's content does not depend on which shards were computed before it. Every
shard is written atomically (``r2bench.atomic``); a pass that is killed leaves whole
shards only, and re-running it computes the missing shards and nothing else. A shard
whose key or prompts no longer match is recomputed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from r2bench.atomic import canonical_json, sha256_text, write_json
from r2bench.errors import R2BenchError
from r2bench.r2rank.digests import served_weights_scope, weights_digest

log = logging.getLogger(__name__)

FORMAT = "r2bench.features/1"
KEY_FILE = "key.json"


@dataclass
class FeatureSet:
    """The cached states of one split (all shards, in instance order)."""

    folder: Path
    key: dict[str, Any]
    hidden: torch.Tensor  # [N, S, K, H]
    margin: torch.Tensor  # [N, S, K]
    finished: torch.Tensor  # [N, S, K] bool
    n_tokens: torch.Tensor  # [N, S, K] int32
    instance_ids: torch.Tensor  # [N]
    target: torch.Tensor  # [N]

    @property
    def n(self) -> int:
        return int(self.hidden.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.hidden.shape[1])


# ----------------------------------------------------------------------------- the key

def template_digest(tokenizer: Any) -> str:
    """sha256 of what shapes a prompt: the Figure 2 texts, the length limits and the chat template."""
    from r2bench.lm import prompts as P

    parts = {"task": P.TASK_TEXT, "requirements": P.REQUIREMENTS_TEXT, "direct": P.DIRECT_REQUIREMENTS_TEXT,
             "limits": repr(P.DEFAULT_LIMITS), "chat_template": str(getattr(tokenizer, "chat_template", ""))}
    return sha256_text(canonical_json(parts))


def feature_key(cfg: Any, benchmark: Any, tokenizer: Any, backbone_digest: str, adapter_digest: str | None,
                split: str, selection: str, greedy: bool, seed: int, dtype: str) -> dict[str, Any]:
    """Everything the cached states of one split depend on (its hash names the folder)."""
    sampled = not greedy and not cfg.no_cot
    samples = int(cfg.samples) if sampled else 1
    generation = {
        "no_cot": bool(cfg.no_cot), "max_reasoning_tokens": 0 if cfg.no_cot else int(cfg.max_reasoning_tokens),
        "do_sample": sampled, "samples": samples, "batch_size": int(cfg.batch_size),
        "shared_prefix": bool(cfg.shared_prefix), "dtype": dtype, "attn_implementation": cfg.attn_implementation,
    }
    if sampled:
        generation.update(temperature=float(cfg.temperature), top_p=float(cfg.top_p))
    if getattr(cfg, "generator", "hf") == "openai" and not cfg.no_cot:
        # reasonings written by a serving engine of the same weights (which the key cannot hash: the served
        # name stands for them), then decided locally
        generation.update(generator="openai", served_model=cfg.model, server_token_ids=bool(cfg.server_token_ids))
    uses_seed = sampled or ":" in selection  # sample:N and last-per-user:N draw with the seed
    return {
        "format": FORMAT, "backbone": {"name": cfg.backbone, "sha256": backbone_digest},
        "adapter": None if adapter_digest is None else {"name": cfg.adapter, "sha256": adapter_digest},
        "prompt_template_sha256": template_digest(tokenizer), "generation": generation,
        "benchmark": {"dataset": benchmark.name, "fingerprint": benchmark.fingerprint},
        "split": split, "instances": selection, "seed": int(seed) if uses_seed else None,
        "shard_size": int(cfg.shard_size),
    }


def key_hash(key: dict[str, Any]) -> str:
    return sha256_text(canonical_json(key))[:16]


# ----------------------------------------------------------------------------- computing states

def instance_states(model: Any, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], *, no_cot: bool,
                    max_reasoning_tokens: int, do_sample: bool, temperature: float, top_p: float,
                    generator: torch.Generator | None, shared_prefix: bool, batch_size: int):
    """Decision states ``[K, H]``, margins ``[K]`` and reasonings of one instance, as ``r2bench run`` reads them."""
    from r2bench.r2rank.inference import reason_and_decide

    reasonings, hidden, margin, _ = reason_and_decide(
        model, tokenizer, prompt_ids, head=None, max_new_tokens=0 if no_cot else max_reasoning_tokens,
        do_sample=do_sample, temperature=temperature, top_p=top_p, generator=generator,
        shared_prefix=shared_prefix, batch_size=batch_size,
    )
    return hidden.detach().float().cpu(), margin.detach().float().cpu(), reasonings


class StateComputer:
    """Computes the states of instance rows with a loaded frozen model (the cache's and the online path)."""

    def __init__(self, cfg: Any, model: Any, tokenizer: Any, benchmark: Any, greedy: bool, seed: int,
                 cache_scope: str | None = None):
        self.cfg, self.model, self.tok = cfg, model, tokenizer
        self.records = benchmark.item_records()
        self.profile_fields = benchmark.profile_fields
        self.greedy = greedy or cfg.no_cot
        self.samples = 1 if self.greedy else int(cfg.samples)
        self.seed = int(seed)
        self.client = None
        if getattr(cfg, "generator", "hf") == "openai" and not cfg.no_cot:
            from r2bench.extras import require
            from r2bench.llm.client import LLMClient

            require("openai", purpose="feature reasonings with generator=openai")
            self.client = LLMClient(cfg, seed=seed, allow_partial=True, cache_scope=cache_scope)

    def _messages(self, row: dict[str, Any]) -> list[list[dict[str, str]]]:
        from r2bench.lm.prompts import instance_prompt

        return instance_prompt(row, self.records, self.profile_fields, no_cot=self.cfg.no_cot).all_messages()

    def prompt_ids(self, row: dict[str, Any]) -> list[list[int]]:
        from r2bench.lm.generation import encode_prompts

        return encode_prompts(self.tok, self._messages(row))

    def served_sample(self, row: dict[str, Any], j: int, prompt_ids):
        """Sample ``j`` with the reasonings from the serving engine (request seed per instance and sample;
        greedy: the run's seed, as ``r2bench run`` sends it) and the states from one local prefill."""
        from r2bench.r2rank.inference import decide_instances
        from r2bench.r2rank.remote import remote_reasonings
        from r2bench.stablehash import hash_seed

        c = self.cfg
        self.client.seed = self.seed if self.greedy else hash_seed(self.seed, int(row["instance_id"]), j) & 0x7FFFFFFF
        reasonings, _ = remote_reasonings(
            self.client, self.tok, [self._messages(row)], [prompt_ids], max_tokens=c.max_reasoning_tokens,
            do_sample=not self.greedy, temperature=c.temperature, top_p=c.top_p,
            server_token_ids=bool(c.server_token_ids))
        (rs, hidden, margin, _), = decide_instances(self.model, self.tok, [prompt_ids], reasonings,
                                                   shared_prefix=c.shared_prefix, batch_size=c.batch_size)
        return hidden.detach().float().cpu(), margin.detach().float().cpu(), rs

    def sample(self, row: dict[str, Any], j: int, prompt_ids=None):
        """(hidden [K, H], margin [K], reasonings) of reasoning sample ``j`` of one instance."""
        from r2bench.stablehash import hash_seed

        c = self.cfg
        if prompt_ids is None:
            prompt_ids = self.prompt_ids(row)
        if self.client is not None:
            return self.served_sample(row, j, prompt_ids)
        gen = None if self.greedy else torch.Generator(device=self.model.device).manual_seed(
            hash_seed(self.seed, int(row["instance_id"]), j))
        return instance_states(
            self.model, self.tok, prompt_ids, no_cot=c.no_cot,
            max_reasoning_tokens=c.max_reasoning_tokens, do_sample=not self.greedy, temperature=c.temperature,
            top_p=c.top_p, generator=gen, shared_prefix=c.shared_prefix, batch_size=c.batch_size,
        )


def _prompt_digest(prompts: list[list[list[int]]]) -> str:
    return sha256_text(json.dumps(prompts, separators=(",", ":")))


def _shard_ok(path: Path, khash: str, prompt_sha: str) -> bool:
    from safetensors import safe_open

    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # a foreign or damaged file: recompute it
        return False
    return meta.get("format") == FORMAT and meta.get("key") == khash and meta.get("prompts_sha256") == prompt_sha


def build_split(computer: StateComputer, rows: list[dict[str, Any]], key: dict[str, Any], root: str | Path,
                on_instance: Callable[[int], None] | None = None) -> Path:
    """Compute (or resume) the shards of ``rows`` under ``root/<split>-<hash>``; returns that folder.

    ``on_instance(instance_id)`` is called after each computed instance (progress, tests).
    """
    from safetensors.torch import save_file

    from r2bench.atomic import atomic_path
    from r2bench.progress import bar

    khash = key_hash(key)
    folder = Path(root) / f"{key['split']}-{khash}"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / KEY_FILE, {**key, "key_sha256": khash, "n_instances": len(rows)})
    size = max(1, int(key["shard_size"]))
    n_shards = (len(rows) + size - 1) // size
    computed = 0
    with bar(total=len(rows), desc=f"features {key['split']}", unit="inst") as pbar:
        for s in range(n_shards):
            part = rows[s * size:(s + 1) * size]
            prompts = [computer.prompt_ids(r) for r in part]
            psha = _prompt_digest(prompts)
            path = folder / f"shard-{s:05d}.safetensors"
            if _shard_ok(path, khash, psha):
                pbar.update(len(part))
                continue
            hid, mar, fin, ntok = [], [], [], []
            for row, pids in zip(part, prompts):
                per = [computer.sample(row, j, pids) for j in range(computer.samples)]
                hid.append(torch.stack([h for h, _, _ in per]))
                mar.append(torch.stack([m for _, m, _ in per]))
                fin.append(torch.tensor([[r.finished for r in rs] for _, _, rs in per], dtype=torch.uint8))
                ntok.append(torch.tensor([[len(r.token_ids) for r in rs] for _, _, rs in per], dtype=torch.int32))
                computed += 1
                pbar.update(1)
                if on_instance is not None:
                    on_instance(int(row["instance_id"]))
            tensors = {
                "hidden": torch.stack(hid).contiguous(), "margin": torch.stack(mar).contiguous(),
                "finished": torch.stack(fin).contiguous(), "n_tokens": torch.stack(ntok).contiguous(),
                "instance_id": torch.tensor([int(r["instance_id"]) for r in part], dtype=torch.int64),
                "target_index": torch.tensor([int(r["target_index"]) for r in part], dtype=torch.int64),
            }
            meta = {"format": FORMAT, "key": khash, "shard": str(s), "prompts_sha256": psha}
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp), metadata=meta)
    log.info("features %s: %d of %d instances computed, the rest read from the cache", folder, computed, len(rows))
    return folder


def load_split(folder: str | Path) -> FeatureSet:
    """All shards of one cached split; an error names any missing shard."""
    from safetensors.torch import load_file

    folder = Path(folder)
    kpath = folder / KEY_FILE
    if not kpath.is_file():
        raise R2BenchError(f"{folder}: not a feature cache (no {KEY_FILE})")
    key = json.loads(kpath.read_text())
    size, n = int(key["shard_size"]), int(key["n_instances"])
    n_shards = (n + size - 1) // size
    missing = [f"shard-{s:05d}" for s in range(n_shards) if not (folder / f"shard-{s:05d}.safetensors").is_file()]
    if missing:
        raise R2BenchError(f"{folder}: incomplete feature cache, missing {', '.join(missing[:5])}"
                           f"{' ...' if len(missing) > 5 else ''} (re-run the same command to finish it)")
    parts = [load_file(str(folder / f"shard-{s:05d}.safetensors")) for s in range(n_shards)]
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}
    if not cat:
        raise R2BenchError(f"{folder}: the feature cache holds no instances")
    return FeatureSet(folder=folder, key=key, hidden=cat["hidden"], margin=cat["margin"],
                      finished=cat["finished"].bool(), n_tokens=cat["n_tokens"],
                      instance_ids=cat["instance_id"], target=cat["target_index"])


# ----------------------------------------------------------------------------- the command's entry point

def load_frozen(cfg: Any) -> tuple[Any, Any, str, str | None]:
    """(model, tokenizer, backbone digest, adapter digest) loaded exactly as ``r2bench run --method r2rank`` does."""
    from r2bench.r2rank.method import R2RankConfig, R2RankMethod

    rcfg = R2RankConfig(backbone=cfg.backbone, adapter=cfg.adapter, head="none", device=cfg.device, dtype=cfg.dtype,
                        attn_implementation=cfg.attn_implementation, threads=cfg.threads)
    method = R2RankMethod(rcfg)
    method.load()
    adapter = weights_digest(cfg.adapter) if cfg.adapter else None
    return method.model, method.tokenizer, weights_digest(method._backbone_path), adapter


def split_rows(benchmark: Any, split: str, selection: str, seed: int) -> list[dict[str, Any]]:
    """The instances of ``split`` chosen by ``selection`` (``r2bench.r2rank.instances``)."""
    from r2bench.r2rank.instances import select_instances

    return select_instances(benchmark.split(split).to_dicts(), selection, seed)


def build_features(cfg: Any, benchmark: Any, root: str | Path, seed: int = 0, splits: Sequence[str] | None = None,
                   model: Any = None, tokenizer: Any = None, digests: tuple[str, str | None] | None = None,
                   on_instance: Callable[[int], None] | None = None) -> dict[str, Path]:
    """Cache the train states (``train_instances``; sampled reasonings under CoT) and the held-out
    states (``eval_split``, greedy as at inference). Returns ``{split: folder}``."""
    import time

    if model is None:
        model, tokenizer, b_digest, a_digest = load_frozen(cfg)
    else:
        b_digest, a_digest = digests or ("given-model", None)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    wanted = list(splits) if splits else ["train", cfg.eval_split]
    out: dict[str, Path] = {}
    for split in dict.fromkeys(wanted):
        is_train = split == "train"
        selection = cfg.train_instances if is_train else (f"sample:{cfg.eval_instances}" if cfg.eval_instances else "all")
        rows = split_rows(benchmark, split, selection, seed)
        if not rows:
            raise R2BenchError(f"benchmark {benchmark.path} has no {split} instances for train_instances={selection!r}")
        key = feature_key(cfg, benchmark, tokenizer, b_digest, a_digest, split, selection, greedy=not is_train,
                          seed=seed, dtype=dtype)
        computer = StateComputer(cfg, model, tokenizer, benchmark, greedy=not is_train, seed=seed,
                                 cache_scope=served_weights_scope(b_digest, a_digest))
        t0 = time.perf_counter()
        out[split] = build_split(computer, rows, key, root, on_instance)
        log.info("features %s: %.1f s", split, time.perf_counter() - t0)
    return out
