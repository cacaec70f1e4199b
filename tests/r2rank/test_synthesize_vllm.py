"""The offline teacher: a vLLM-served SmolLM2 constrained to the three-part Figure 2 response, sampled per pair.

Every answer must follow the Figure 2 format exactly (the constraint), several samples per
pair must be asked with their own seeds, and only the responses whose decision matches the
label may be kept.
"""

from __future__ import annotations

import re

import polars as pl
import pytest

pytestmark = pytest.mark.server

pytest.importorskip("openai")


def test_constrained_teacher_answers_in_the_figure_2_format(vllm_server, tiny_benchmark, tmp_path):
    from r2bench.r2rank.synthesize import SECTION_HEADERS, response_regex, synthesize
    from r2bench.r2rank.train_config import SynthesizeConfig

    cfg = SynthesizeConfig(base_url=vllm_server.base_url, model=vllm_server.alias, max_instances=3,
                           negatives_per_positive=1, samples_per_pair=2, temperature=0.9, max_tokens=200,
                           structured_output="regex", section_chars="10-60", cache_path=str(tmp_path / "c.sqlite"),
                           concurrency=6, timeout_s=600)
    stats = synthesize(tiny_benchmark, cfg, tmp_path / "sft-data", seed=0)
    df = pl.read_parquet(tmp_path / "sft-data" / "sft_data.parquet")
    assert stats["asked"] == df.height == 3 * 2 * 2 and stats["pairs"] == 6
    assert sorted(df["sample"].unique().to_list()) == [0, 1]
    assert stats["answered"] == df.height and stats["decided"] == df.height and stats["unparsed"] == 0
    for text in df["response"]:
        assert re.fullmatch(response_regex("10-60"), text), text
        assert [text.index(h) for h in SECTION_HEADERS] == sorted(text.index(h) for h in SECTION_HEADERS)
    # each sample had its own request seed: the two samples of a pair are different answers
    pairs = df.group_by("instance_id", "item_id").agg(pl.col("response").n_unique().alias("distinct"))
    assert (pairs["distinct"] == 2).sum() >= 4
    want = {1: "Recommend", 0: "Not Recommend"}
    kept = df.filter(pl.col("kept"))
    assert all(d == want[label] for d, label in zip(kept["decision"], kept["label"]))
    assert df.filter(~pl.col("kept"))["decision"].to_list() == [
        "Not Recommend" if lab == 1 else "Recommend" for lab in df.filter(~pl.col("kept"))["label"]]
    assert stats["kept"] == kept.height and stats["kept_positive"] + stats["kept_negative"] == kept.height

    # a re-run is answered by the cache (nothing is asked twice)
    again = synthesize(tiny_benchmark, cfg, tmp_path / "sft-data2", seed=0)
    assert again["usage"]["sent"] == 0 and again["kept"] == stats["kept"]


def test_sampling_needs_a_temperature(tiny_benchmark, tmp_path):
    from r2bench.errors import R2BenchError
    from r2bench.r2rank.synthesize import response_regex, synthesize
    from r2bench.r2rank.train_config import SynthesizeConfig

    with pytest.raises(R2BenchError, match="temperature > 0"):
        synthesize(tiny_benchmark, SynthesizeConfig(samples_per_pair=3, temperature=0.0), tmp_path)
    with pytest.raises(R2BenchError, match="section_chars"):
        response_regex("40")
    assert re.fullmatch(response_regex("5-9"),
                        "#Initial reasoning: abcde\n#Self-check: fghij\n#Final conclusion and suggestion: klmno\n"
                        "<answer>Recommend</answer>")
    assert not re.fullmatch(response_regex("5-9"),
                            "#Initial reasoning: abc\n#Self-check: fghij\n#Final conclusion and suggestion: klmno\n"
                            "<answer>Recommend</answer>")
