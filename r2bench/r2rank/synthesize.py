"""SFT data synthesis with a teacher model (paper section 3.4, "SFT data construction").

For a seeded sample of train instances, the self-reflective template (Figure 2) is
filled with the user context and each of: the positive (the target) and
``negatives_per_positive`` negatives drawn from the instance's other candidates.
The teacher (any OpenAI-compatible endpoint through ``r2bench.llm``; DeepSeek-R1 in
the paper) writes a complete response ending with ``<answer>Recommend</answer>`` or
``<answer>Not Recommend</answer>``; a response is **kept** only when its decision
matches the label. The SFT target is the teacher's *answer* (the three-part
response); a reasoning model's separate thinking is stored in the table but not
trained on.

Output folder:

- ``sft_data.parquet``: one row per (instance, item, sample) asked: ``instance_id``,
  ``user_id``, ``item_id``, ``sample``, ``label`` (1 positive / 0 negative), ``messages`` (the
  prompt as JSON), ``response``, ``teacher_reasoning``, ``decision``, ``ok``
  (answered), ``kept``;
- ``stats.json``: asked, answered, kept (overall and per label), tokens and cost
  (the client's usage summary), the config (without any key) and the benchmark
  fingerprint.

Offline stand-in for the teacher: any local model served by vLLM, constrained by a
regular expression (:func:`response_regex`, sent as vLLM's ``structured_outputs``) to
write the three Figure 2 parts, each of bounded length, and to end in exactly
``<answer>Recommend</answer>`` or ``<answer>Not Recommend</answer>``
(``structured_output=regex``). With ``samples_per_pair > 1`` each pair is asked several
times, each request with its own seed (sample at a temperature above 0), and every
response whose decision matches the label is kept: a small teacher is right about half
the time, so sampling is what turns it into enough correct-by-filter examples. The
stand-in teaches the *format*; its reasons carry no more preference signal than the
filter puts in the decisions (a real teacher such as DeepSeek-R1 runs the same command,
unconstrained, with an API key).

Resumable: every answer is committed to the client's response cache as it
arrives, so a killed run asks only what is missing. ``responses_file`` replaces the
API with a JSONL file of answers (``{"instance_id", "item_id", "text"}`` per line;
``"reasoning"`` optional), for offline tests and for answers obtained elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import polars as pl

from r2bench.answer import NOT_RECOMMEND, RECOMMEND, parse_decision
from r2bench.errors import R2BenchError
from r2bench.lm.prompts import instance_prompt
from r2bench.r2rank.train_config import SynthesizeConfig
from r2bench.stablehash import stable_hash64, stable_rng

log = logging.getLogger(__name__)


def select_pairs(benchmark, cfg: SynthesizeConfig, seed: int = 0) -> list[dict[str, Any]]:
    """The (instance, item, label, messages) to ask about, deterministic in ``seed``."""
    rows = benchmark.split("train").to_dicts()
    if not rows:
        raise R2BenchError(f"benchmark {benchmark.path} has no train instances to synthesize SFT data from")
    order = stable_rng(seed, "sft-instances").permutation(len(rows))
    if cfg.max_instances:
        order = order[: cfg.max_instances]
    records = benchmark.item_records()
    pairs = []
    for i in sorted(order.tolist(), key=lambda j: rows[j]["instance_id"]):
        row = rows[i]
        t = int(row["target_index"])
        others = [k for k in range(len(row["candidates"])) if k != t]
        rng = stable_rng(seed, "sft-negatives", int(row["instance_id"]))
        negs = rng.choice(others, size=min(cfg.negatives_per_positive, len(others)), replace=False).tolist()
        prompt = instance_prompt(row, records, benchmark.profile_fields, no_cot=cfg.no_cot)
        for k in [t] + sorted(negs):
            pairs.append({
                "instance_id": int(row["instance_id"]), "user_id": str(row["user_id"]),
                "item_id": str(row["candidates"][k]), "label": int(k == t), "messages": prompt.messages(k),
            })
    return pairs


#: the three part headers of Figure 2, in order
SECTION_HEADERS = ("#Initial reasoning:", "#Self-check:", "#Final conclusion and suggestion:")


def _section_bounds(spec: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in str(spec).split("-"))
        if not 0 < lo <= hi:
            raise ValueError
    except ValueError:
        raise R2BenchError(f"section_chars must be MIN-MAX with 0 < MIN <= MAX (e.g. 20-400), got {spec!r}") from None
    return lo, hi


def response_regex(section_chars: str = "20-400") -> str:
    """The three-part Figure 2 response as a regular expression.

    Each part is its header and one paragraph of ``section_chars`` characters that holds no
    ``#``, ``<`` or line break (so a part cannot open the next header or an answer tag early);
    the parts are separated by a line break and the response ends with exactly one
    ``<answer>Recommend</answer>`` or ``<answer>Not Recommend</answer>``.
    """
    lo, hi = _section_bounds(section_chars)
    body = f"[^#<\\n]{{{lo},{hi}}}"
    # the headers hold no regex metacharacter, so they go in as they are (some servers' regex dialects
    # reject escapes such as "\\ " or "\\#" that Python's re.escape would add)
    parts = "\\n".join(f"{h} {body}" for h in SECTION_HEADERS)
    return f"{parts}\\n<answer>({RECOMMEND}|{NOT_RECOMMEND})</answer>"


def _teacher_answers(pairs: list[dict[str, Any]], cfg: SynthesizeConfig, seed: int) -> tuple[list[dict], dict]:
    """Per pair: {"ok", "response", "reasoning"}; and the usage summary."""
    if cfg.responses_file:
        path = Path(cfg.responses_file)
        if not path.is_file():
            raise R2BenchError(f"responses_file not found: {path}")
        table: dict[tuple[int, str], dict] = {}
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                table[(int(rec["instance_id"]), str(rec["item_id"]))] = rec
            except (ValueError, KeyError) as exc:
                raise R2BenchError(f"{path}:{n}: expected a JSON object with instance_id, item_id, text ({exc})") from None
        out = []
        for p in pairs:
            rec = table.get((p["instance_id"], p["item_id"]))
            out.append({"ok": rec is not None and bool(rec.get("text")), "response": (rec or {}).get("text"),
                        "reasoning": (rec or {}).get("reasoning")})
        return out, {"calls": len(pairs), "source": str(path), "ok": sum(o["ok"] for o in out)}
    from r2bench.extras import require
    from r2bench.llm.client import LLMClient

    require("openai", purpose="asking the SFT teacher")
    client_cfg = dataclasses.replace(cfg)  # the client reads only its own fields
    client = LLMClient(client_cfg, seed=seed)
    extra = {}
    if cfg.structured_output == "regex":
        extra = {"extra_body": {"structured_outputs": {"regex": response_regex(cfg.section_chars)}}}
    elif cfg.structured_output != "none":
        raise R2BenchError(f"structured_output must be none or regex, got {cfg.structured_output!r}")
    requests = []
    for p in pairs:
        client.seed = p["request_seed"]
        requests.append(client.request(p["messages"], **extra))
    try:
        results = client.run_batch(requests, desc="teacher")
        usage = client.usage()
    finally:
        client.close()
    return [{"ok": r.ok, "response": r.answer, "reasoning": r.reasoning} for r in results], usage


def synthesize(benchmark, cfg: SynthesizeConfig, out_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Ask the teacher, keep the answers whose decision matches the label, write the folder; return the stats."""
    from r2bench.atomic import atomic_path, write_json

    if cfg.samples_per_pair < 1:
        raise R2BenchError(f"samples_per_pair must be at least 1, got {cfg.samples_per_pair}")
    if cfg.samples_per_pair > 1 and cfg.temperature <= 0 and not cfg.responses_file:
        raise R2BenchError("samples_per_pair > 1 needs temperature > 0 (greedy decoding gives the same answer each time)")
    pairs = [{**p, "sample": j, "request_seed": seed if j == 0 else stable_hash64(seed, "sft-sample", j) & 0x7FFFFFFF}
             for p in select_pairs(benchmark, cfg, seed) for j in range(cfg.samples_per_pair)]
    answers, usage = _teacher_answers(pairs, cfg, seed)
    recs = []
    for p, a in zip(pairs, answers):
        decision = parse_decision(a["response"] or "") if a["ok"] else None
        want = RECOMMEND if p["label"] == 1 else NOT_RECOMMEND
        recs.append({
            "instance_id": p["instance_id"], "user_id": p["user_id"], "item_id": p["item_id"], "sample": p["sample"],
            "label": p["label"],
            "messages": json.dumps(p["messages"], ensure_ascii=False), "response": a["response"],
            "teacher_reasoning": a["reasoning"], "decision": decision, "ok": bool(a["ok"]),
            "kept": bool(a["ok"] and decision == want),
        })
    df = pl.DataFrame(recs, schema={
        "instance_id": pl.Int64, "user_id": pl.String, "item_id": pl.String, "sample": pl.Int32, "label": pl.Int8,
        "messages": pl.String,
        "response": pl.String, "teacher_reasoning": pl.String, "decision": pl.String, "ok": pl.Boolean, "kept": pl.Boolean,
    })
    stats = {
        "asked": df.height, "answered": int(df["ok"].sum()), "kept": int(df["kept"].sum()),
        "pairs": df.select("instance_id", "item_id").unique().height,
        "pairs_with_a_kept_response": df.filter(pl.col("kept")).select("instance_id", "item_id").unique().height,
        "decided": int(df["decision"].is_not_null().sum()),
        "kept_positive": int(df.filter(pl.col("label") == 1)["kept"].sum()),
        "kept_negative": int(df.filter(pl.col("label") == 0)["kept"].sum()),
        "asked_positive": int((df["label"] == 1).sum()), "asked_negative": int((df["label"] == 0).sum()),
        "unparsed": int(df.filter(pl.col("ok") & pl.col("decision").is_null()).height),
        "usage": usage, "benchmark": str(benchmark.path), "benchmark_fingerprint": benchmark.fingerprint,
        "seed": seed, "config": {k: v for k, v in dataclasses.asdict(cfg).items() if "key" not in k or k == "api_key_env"},
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "sft_data.parquet") as tmp:
        df.write_parquet(tmp)
    write_json(out / "stats.json", stats)
    log.info("SFT data: asked %d, answered %d, kept %d", stats["asked"], stats["answered"], stats["kept"])
    return stats


def load_sft_data(folder: str | Path) -> pl.DataFrame:
    """The kept rows of a synthesized folder (or a parquet file)."""
    p = Path(folder)
    f = p / "sft_data.parquet" if p.is_dir() else p
    if not f.is_file():
        raise R2BenchError(f"no SFT data at {f}: run `r2bench r2rank synthesize` first")
    df = pl.read_parquet(f).filter(pl.col("kept"))
    if df.height == 0:
        raise R2BenchError(f"{f}: no kept responses (the teacher's decisions never matched the labels)")
    return df
