"""Tiny causal LM + tokenizer fixtures for the R2Rank tests (no download).

The tokenizer is a byte-level BPE trained here on the prompt template and fixture
item text, wrapped in ``PreTrainedTokenizerFast`` with a ChatML chat template (the
same shape as SmolLM2's). ``<answer>``/``</answer>`` are single tokens with ids 1/0,
so a model whose logits are all equal (argmax = id 0) emits ``</answer>`` at once.
The model is a 2-layer Llama with hidden size 32, seeded.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from r2bench.lm import prompts as P  # noqa: E402

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TITLES = [
    "Toy Story", "Heat", "Fargo", "Casino", "Jumanji", "Sabrina", "GoldenEye", "Balto", "Nixon",
    "Cutthroat Island", "Sense and Sensibility", "Four Rooms", "Get Shorty", "Copycat", "Othello",
    "Now and Then", "Persuasion", "Babe", "Dead Man Walking", "Clueless", "Mighty Aphrodite",
    "Braveheart", "Apollo 13", "Batman Forever", "Congo", "Crimson Tide", "Desperado",
]
GENRES = ["Action", "Comedy", "Drama", "Thriller", "Animation", "Crime", "Romance", "Sci-Fi"]


def fixture_items(n: int = 27) -> dict[str, dict]:
    items = {}
    for i in range(n):
        items[f"m{i}"] = {
            "item_id": f"m{i}",
            "title": f"{TITLES[i % len(TITLES)]} ({1990 + i % 9})",
            "genres": " ".join(GENRES[j % len(GENRES)] for j in range(i % 3 + 1 + i // 9, i % 3 + 3 + i // 9)),
            "release_year": str(1990 + i % 9),
        }
    return items


def fixture_row(n_candidates: int = 6, history_len: int = 8, instance_id: int = 0, offset: int = 0) -> dict:
    hist = [f"m{(offset + 3 * j) % 27}" for j in range(history_len)]
    cands = [f"m{(offset + 2 * j + 1) % 27}" for j in range(n_candidates)]
    return {
        "instance_id": instance_id, "split": "test", "user_id": f"u{instance_id}",
        "history": hist, "history_timestamps": [875000000000 + 86400000 * j for j in range(history_len)],
        "target": cands[0], "candidates": cands, "target_index": 0,
        "profile_age": "24", "profile_occupation": "technician",
    }


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    items = fixture_items()
    texts = [P.TASK_TEXT, P.REQUIREMENTS_TEXT, P.DIRECT_REQUIREMENTS_TEXT, "User Context: Profile: History (oldest first):"]
    texts += [P.render_item(r) for r in items.values()] + ["Recommend Not Recommend assistant user system"] * 3
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["</answer>", "<answer>", "<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<pad>")
    tok.chat_template = CHATML
    return tok


def _build_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=False, eos_token_id=3, pad_token_id=4, bos_token_id=None,
    )
    model = LlamaForCausalLM(cfg).eval()
    # Larger random weights than the default init so greedy tokens vary with the context.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls on a shared 2-core box run ~20x faster on one thread (no spin-waiting)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return _train_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return _build_model(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model, tiny_tokenizer):
    """The tiny model and tokenizer saved as a Hugging Face folder."""
    d = tmp_path_factory.mktemp("tiny_lm")
    tiny_model.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def items():
    return fixture_items()



@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """A benchmark with a planted signal (every user watches "Gold" films; see test_training.py).
    Test modules that train the LLM define their own ``planted``, which takes precedence."""
    from r2bench.data.benchmark import load_benchmark
    from tests.r2rank.test_training import planted_benchmark

    return load_benchmark(planted_benchmark(tmp_path_factory.mktemp("planted_frozen")))


@pytest.fixture(scope="session")
def tiny(planted):
    """(a frozen tiny random Llama, its tokenizer trained on ``planted``'s prompts) for the frozen-feature tests."""
    from tests.r2rank.test_training import make_tiny_lm, prompt_texts

    model, tok = make_tiny_lm(prompt_texts(planted))
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok
