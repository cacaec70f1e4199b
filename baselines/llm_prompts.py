"""The prompt templates of the LLM-API baselines, in one readable place.

Every LLM method sees the same user context: it is rendered by
``r2bench.lm.prompts`` (profile, then the history oldest first with dates,
titles and key fields), the same code the R2Rank model and ``llm-reflective``
(the paper's Figure 2 template, also defined there) use.

- listwise (the paper's DeepSeek-R1 protocol): the context and all candidates,
  each behind a short identifier ``[1]..[K]``, asking for a full ranking in the
  ``[3] > [1] > [2]`` form (RankGPT / LLMRank style), which ``parse_ranking`` reads.
  With ``structured_output`` the server is made to answer in that form:
  ``regex`` sends :func:`listwise_regex` as vLLM's ``structured_outputs: {"regex": ...}``
  (``guided_regex``, the older name, is silently ignored by vLLM 0.32); ``json_schema``
  sends :func:`listwise_json_schema` through OpenAI's ``response_format`` (vLLM,
  llama.cpp's server, OpenAI and SGLang read it).
- pointwise (TALLRec / Prompt4NR style): the context and one candidate, asking for
  ``Yes`` or ``No``; the score is logprob(Yes) - logprob(No). The candidate comes
  last so the 20 prompts of a user share a prefix (servers with prefix caching,
  such as llama.cpp and vLLM, then encode the context once).
"""

from __future__ import annotations

LISTWISE_TEMPLATE = """\
You are a recommendation assistant. Based on the user's interaction history, rank the candidate items by how likely the user is to interact with each of them next.

{context}

Candidate items ({k}), each with an identifier in square brackets:
{candidates}

Rank all {k} candidates from the most to the least likely. Answer with the identifiers only, on one line, separated by " > ", for example: [3] > [1] > [2]. Include every identifier exactly once."""

POINTWISE_TEMPLATE = """\
Given the user's interaction history, identify whether the user will like the target item by answering "Yes" or "No".

{context}

Target item: {item}

Will the user like the target item? Answer "Yes" or "No"."""


def candidate_label(i: int) -> str:
    """The identifier of the i-th presented candidate (0-based ``i``): ``[1]``, ``[2]``..."""
    return f"[{i + 1}]"


def listwise_regex(k: int) -> str:
    """A regular expression for exactly ``k`` identifiers ``[1]..[k]`` joined by `` > `` (the answer format above).

    It cannot forbid repeats (a permutation of 20 needs a 20!-state automaton), so a
    constrained answer always parses, but may repeat an identifier; the parser drops
    repeats and leaves the candidates the answer missed tied at the bottom.
    """
    one = r"\[(?:" + "|".join(str(i) for i in range(k, 0, -1)) + r")\]"
    return one if k == 1 else f"{one}(?: > {one}){{{k - 1}}}"


def listwise_json_schema(k: int) -> dict:
    """The same answer as a JSON array of exactly ``k`` identifiers (``["[3]", "[1]", ...]``), for ``response_format``."""
    return {"type": "array", "items": {"type": "string", "enum": [candidate_label(i) for i in range(k)]},
            "minItems": k, "maxItems": k}


def listwise_messages(context: str, item_texts: list[str]) -> list[dict[str, str]]:
    lines = "\n".join(f"{candidate_label(i)} {t}" for i, t in enumerate(item_texts))
    content = LISTWISE_TEMPLATE.format(context=context, candidates=lines, k=len(item_texts))
    return [{"role": "user", "content": content}]


def pointwise_messages(context: str, item_text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": POINTWISE_TEMPLATE.format(context=context, item=item_text)}]
