"""The Figure 2 prompt: exact rendering of one fixture instance, truncation, decision parsing."""

from __future__ import annotations

from r2bench.lm import prompts as P

ITEMS = {
    "i1": {"item_id": "i1", "title": "Toy Story (1995)", "release_year": "1995", "genres": "Animation Children's Comedy"},
    "i2": {
        "item_id": "i2", "title": "Heat (1995)", "release_year": "1995", "genres": "Action Crime Thriller",
        "description": " ".join(f"w{i}" for i in range(100)),
    },
    "i3": {"item_id": "i3", "title": "Fargo (1996)", "release_year": None, "genres": "Crime Drama Thriller"},
}
ROW = {
    "instance_id": 7, "split": "test", "user_id": "u1",
    "history": ["i1", "i2"], "history_timestamps": [874965758000, 875071561000],
    "target": "i3", "candidates": ["i3", "i2", "zz"],
    "profile_age": "24", "profile_gender": None, "profile_occupation": "technician",
}

EXPECTED = """You are a recommendation assistant. Analyze the user's history in depth and decide whether to recommend the candidate item.

Requirements: Generate a response with the following three parts in order:
#Initial reasoning: thoroughly analyze relevant evidence from USER CONTEXT and CANDIDATE ITEM.
#Self-check: identify mistakes, missing evidence, uncertainties, or over-weighted signals in the initial reasoning.
#Final conclusion and suggestion: produce a concise final rationale and decision.
Finally output: <answer>Recommend</answer> or <answer>Not Recommend</answer>.

User Context:
Profile: age: 24; occupation: technician
History (oldest first):
1. [1997-09-22] Toy Story (1995) (release year: 1995; genres: Animation Children's Comedy)
2. [1997-09-24] Heat (1995) (release year: 1995; genres: Action Crime Thriller; description: w0 w1 w2 w3 w4 w5 w6 w7 ...)

Candidate Item: Fargo (1996) (genres: Crime Drama Thriller)"""


def test_exact_rendering_of_fixture_instance():
    p = P.instance_prompt(ROW, ITEMS, ["age", "gender", "occupation"])
    msgs = p.messages(0)
    assert msgs == [{"role": "user", "content": EXPECTED}]
    assert p.instance_id == 7 and p.candidates == ["i3", "i2", "zz"]
    assert p.item_texts[2] == "(unknown item)"


def test_all_prompts_share_the_context_and_end_with_the_candidate():
    p = P.instance_prompt(ROW, ITEMS, ["age", "occupation"])
    contents = [m[0]["content"] for m in p.all_messages()]
    head = contents[0].rsplit("Candidate Item:", 1)[0]
    for c, text in zip(contents, p.item_texts):
        assert c == head + "Candidate Item: " + text


def test_candidate_text_is_bounded():
    limits = P.PromptLimits(item_field_words=5, item_words=12)
    text = P.render_item(ITEMS["i2"], limits=limits)
    assert "description: w0 w1 w2 w3 w4 ..." in text or text.endswith("...")
    assert len(text.split()) <= 13  # 12 words + the "..." marker
    long_title = {"title": " ".join(["t"] * 50)}
    assert P.render_item(long_title).split().count("t") == P.DEFAULT_LIMITS.title_words


def test_no_profile_and_empty_history():
    ctx = P.render_context(P.render_user_profile({}, []), P.render_history([], [], {}))
    assert "Profile" not in ctx and "(no interactions yet)" in ctx


def test_no_cot_variant_asks_for_the_decision_only():
    content = P.reflective_messages("User Context:\nx", "item", no_cot=True)[0]["content"]
    assert "#Self-check" not in content and "Output only the decision" in content


def test_parse_decision():
    assert P.parse_decision("blah <answer>Recommend</answer>") == P.RECOMMEND
    assert P.parse_decision("<answer> not recommend. </answer>") == P.NOT_RECOMMEND
    assert P.parse_decision("<answer>Recommend</answer> then <answer>Not Recommend</answer>") == P.NOT_RECOMMEND
    assert P.parse_decision("I would recommend it") is None
    assert P.parse_decision("<answer>maybe</answer>") is None
