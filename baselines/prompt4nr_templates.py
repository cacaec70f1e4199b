"""Prompt4NR's templates (Zhang & Wang, SIGIR 2023), in the decoder-only form, and their tokenization.

The released code (``resistzzz/Prompt4NR``, one folder per template, e.g.
``Discrete-Relevance/prepro_data.py``) fills BERT cloze templates with a ``[MASK]``
answer word:

- Relevance: ``<candidate_news> is [MASK] to <user_sentence>`` (unrelated / related)
- Emotion: ``The user feels [MASK] about <candidate_news> according to his area of interest <user_sentence>``
  (boring / interesting)
- Action: ``User: <user_sentence> [SEP] News: <candidate_news> [SEP] Dose the user click the news? [MASK]``
  (no / yes)
- Utility: ``Recommending <candidate_news> to the user is a [MASK] choice according to <user_sentence>``
  (bad / good)

Continuous templates put learned tokens ``[P1..Pn]`` before the user part, ``[Q1..Qn]``
before the candidate and ``[M1..Mn]`` before the mask (``Continuous-*``); hybrid ones
keep ``[P..]``/``[Q..]`` and a natural-language cue (``Hybrid-*``, e.g. ``This news is
[MASK] to the user's area of interest``). ``<user_sentence>`` is ``[NSEP] t1 [NSEP] t2 ...``:
the clicked titles, most recent first, each stripped of everything but letters, digits
and spaces and cut to 10 words (candidates to 20), the whole cut to 450 tokens;
``[NSEP]`` is a new vocabulary entry trained with the model.

**Decoder-only form** (what this module renders). A causal LM reads left to right
and its answer is the next token, so every template is re-ordered as *user part,
candidate part, cue*, the cue ending just before the answer word, and the words that
followed ``[MASK]`` in the cloze form (``to <user_sentence>``, ``choice according to
...``) move into the user part's label. The user part comes first so that the 20
prompts of an instance share it as a token prefix (encoded once), and each part is
tokenized on its own so that the prefix is exact. ``news`` becomes the benchmark's
item noun (``movie`` on MovieLens). The answer words are read as single tokens with a
leading space (`` related``); :func:`answer_token_ids` refuses words that are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from r2bench.errors import R2BenchError

FAMILIES = ("relevance", "emotion", "action", "utility")
FORMS = ("discrete", "continuous", "hybrid")

#: (negative, positive) answer words of each family, as in the released ``main-multigpu.py``
ANSWERS: dict[str, tuple[str, str]] = {
    "relevance": ("unrelated", "related"),
    "emotion": ("boring", "interesting"),
    "action": ("no", "yes"),
    "utility": ("bad", "good"),
}

#: discrete templates: (user part, candidate part + cue); ``{user}``, ``{cand}``, ``{noun}``, ``{sep}`` (the part break)
DISCRETE: dict[str, tuple[str, str]] = {
    "relevance": ("The user's area of interest: {user}{sep}", "{cand} is"),
    "emotion": ("His area of interest: {user}{sep}", "About {cand}, the user feels"),
    "action": ("User: {user}{sep}", "{Noun}: {cand}{sep}Does the user click the {noun}?"),
    "utility": ("According to {user}{sep}", "Recommending {cand} to the user is a"),
}

#: hybrid cues (``Hybrid-*/prepro_data.py`` template3, cut before ``[MASK]``)
HYBRID_CUES: dict[str, str] = {
    "relevance": "This {noun} is",
    "emotion": "The user feels",
    "action": "Does the user click the {noun}?",
    "utility": "Recommending the {noun} to the user is a",
}

SEPARATOR_TOKEN = "[NSEP]"
PART_BREAK = "\n"  # stands for the released templates' [SEP] between parts
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9 ]+")


def prompt_tokens(form: str, n: int) -> dict[str, list[str]]:
    """The learned prompt tokens of a form: ``P`` (before the user), ``Q`` (before the candidate), ``M`` (before the cue)."""
    if form == "discrete" or n <= 0:
        return {"P": [], "Q": [], "M": []}
    out = {k: [f"[{k}{i + 1}]" for i in range(n)] for k in ("P", "Q")}
    out["M"] = [f"[M{i + 1}]" for i in range(n)] if form == "continuous" else []
    return out


def clean_title(title: Any, max_words: int) -> str:
    """The released cleaning: letters, digits and spaces only, at most ``max_words`` words."""
    text = _NOT_ALNUM.sub("", str(title or ""))
    return " ".join(text.split()[:max_words])


def item_noun(benchmark_name: str) -> str:
    """``movie`` for MovieLens benchmarks, ``item`` otherwise (the released templates say ``news``)."""
    return "movie" if "movielens" in benchmark_name.lower() else "item"


@dataclass(frozen=True)
class Template:
    """A filled-in template family and form: what :func:`encode_instance` needs."""

    family: str
    form: str
    noun: str
    separator: str  # joins history titles; "[NSEP]" (a new token) or literal text
    answers: tuple[str, str]  # (negative, positive) words, without the leading space
    n_prompt_tokens: int = 3

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise R2BenchError(f"Prompt4NR template {self.family!r}: expected one of {', '.join(FAMILIES)}")
        if self.form not in FORMS:
            raise R2BenchError(f"Prompt4NR form {self.form!r}: expected one of {', '.join(FORMS)}")
        if self.form != "discrete" and self.n_prompt_tokens < 1:
            raise R2BenchError(f"Prompt4NR form {self.form!r} needs n_prompt_tokens >= 1")

    @property
    def learned(self) -> dict[str, list[str]]:
        return prompt_tokens(self.form, self.n_prompt_tokens)

    def new_tokens(self) -> list[str]:
        """Vocabulary entries the backbone gains (the separator and the prompt tokens), in a fixed order."""
        extra = [self.separator] if self.separator == SEPARATOR_TOKEN else []
        ln = self.learned
        return extra + ln["P"] + ln["Q"] + ln["M"]

    def user_sentence(self, titles_recent_first: Sequence[str]) -> str:
        if self.separator == SEPARATOR_TOKEN:
            return " ".join(f"{SEPARATOR_TOKEN} {t}" for t in titles_recent_first)
        return self.separator.join(titles_recent_first)

    def parts(self, user: str, cand: str) -> tuple[str, str]:
        """(user part, candidate part + cue) as text; the answer word follows the second directly."""
        noun = self.noun
        fmt = {"user": user, "cand": cand, "noun": noun, "Noun": noun[:1].upper() + noun[1:], "sep": PART_BREAK}
        if self.form == "discrete":
            u, c = DISCRETE[self.family]
            return u.format(**fmt), c.format(**fmt)
        ln = self.learned
        u = "".join(ln["P"]) + f" {user}{PART_BREAK}"
        if self.form == "continuous":
            return u, "".join(ln["Q"]) + f" {cand}{PART_BREAK}" + "".join(ln["M"])
        return u, "".join(ln["Q"]) + f" {cand}{PART_BREAK}" + HYBRID_CUES[self.family].format(**fmt)


def make_template(family: str, form: str, noun: str, separator: str = SEPARATOR_TOKEN,
                  answer_words: str | None = None, n_prompt_tokens: int = 3) -> Template:
    """A :class:`Template`; ``answer_words`` ``"neg,pos"`` replaces the family's words."""
    answers = ANSWERS.get(family, ("", ""))
    if answer_words:
        words = [w.strip() for w in answer_words.split(",")]
        if len(words) != 2 or not all(words):
            raise R2BenchError(f"answer_words {answer_words!r}: expected two words, negative first: 'no,yes'")
        answers = (words[0], words[1])
    return Template(family, form, noun, separator, answers, n_prompt_tokens)


def answer_token_ids(tokenizer: Any, template: Template) -> tuple[int, int]:
    """(negative id, positive id): each answer word, with its leading space, must be ONE token of the backbone.

    The loss is a 2-way cross-entropy over exactly these two logits and the score their
    difference; a word split over several tokens has no single logit, so it is refused.
    """
    ids = []
    for word in template.answers:
        toks = list(tokenizer(" " + word, add_special_tokens=False)["input_ids"])
        if len(toks) != 1:
            pieces = tokenizer.convert_ids_to_tokens(toks)
            raise R2BenchError(
                f"Prompt4NR answer word {word!r} is {len(toks)} tokens in this backbone's tokenizer "
                f"(' {word}' -> {pieces}); the loss and the score read one logit per answer word, so each "
                f"must be a single token with its leading space: pick others with "
                f"--set answer_words=NEG,POS (template {template.family!r})")
        ids.append(int(toks[0]))
    if ids[0] == ids[1]:
        raise R2BenchError(f"Prompt4NR answer words {template.answers} map to the same token id {ids[0]}")
    return ids[0], ids[1]


@dataclass
class EncodedInstance:
    """One instance's prompts as token ids: the shared user prefix and one continuation per candidate."""

    prefix: list[int]
    rows: list[list[int]]  # candidate part + cue, each ending just before the answer word


def history_titles(row: Mapping[str, Any], titles: Mapping[str, str], max_items: int, max_words: int) -> list[str]:
    """The history's titles, most recent first (the released ``his_clicks.reverse()``), cleaned."""
    hist = list(row.get("history") or [])[-max_items:] if max_items > 0 else []
    return [clean_title(titles.get(i, ""), max_words) for i in reversed(hist)]


def encode_instance(tokenizer: Any, template: Template, user_titles: Sequence[str], cand_texts: Sequence[str],
                    max_user_tokens: int = 450) -> EncodedInstance:
    """Token ids of an instance: the user part once (cut to ``max_user_tokens`` tokens of its sentence,
    as the released ``max_his_len``) and each candidate's part + cue."""
    sentence = template.user_sentence(user_titles)
    ids = list(tokenizer(sentence, add_special_tokens=False)["input_ids"])
    if max_user_tokens > 0 and len(ids) > max_user_tokens:
        sentence = tokenizer.decode(ids[:max_user_tokens])
    first_cand = cand_texts[0] if cand_texts else ""
    user_text, _ = template.parts(sentence, first_cand)
    prefix = list(tokenizer(user_text, add_special_tokens=True)["input_ids"])
    rows = [list(tokenizer(template.parts(sentence, c)[1], add_special_tokens=False)["input_ids"]) for c in cand_texts]
    if any(not r for r in rows):
        raise R2BenchError("a Prompt4NR candidate part encoded to no tokens")
    return EncodedInstance(prefix, rows)
