"""The options of every documented command exist, including the commands the tests cannot run.

A fence marked ``<!-- skip: ... -->`` (a GPU recipe, an API run, hours of training) is never run, so
a renamed option or config key would go stale there unnoticed. This reads every ``bash`` fence of
the docs, run or not, and checks each ``r2bench`` command's ``--options`` against the command's own
argument parser, each ``--set key=value`` (and ``run``'s ``--key=value``) against the config
dataclass of the method or training stage it is given to, and each ``python bench/*.py`` /
``scripts/*.py`` command's options against that script's ``add_argument`` calls.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import shlex

import pytest

from tests.docs.fences import ROOT, all_items

SEPARATORS = {"&&", "||", ";", "|", "&"}


def _commands(text: str) -> list[list[str]]:
    """The simple commands of a fence, as word lists (continuations joined, comments dropped)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        try:
            words = list(lex)
        except ValueError:  # an unbalanced quote in an example: not a command we can read
            continue
        current: list[str] = []
        for w in words:
            if w in SEPARATORS:
                out.append(current)
                current = []
            else:
                current.append(w)
        out.append(current)
    return [c for c in out if c]


def _r2bench_args(words: list[str]) -> list[str] | None:
    if words[0] == "r2bench":
        return words[1:]
    if "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "r2bench":
        return words[words.index("-m") + 2:]  # python -m r2bench, accelerate launch ... -m r2bench
    return None


def _parser_for(args: list[str]):
    from r2bench.cli import build_parser

    parser, path = build_parser(), []
    while args and not args[0].startswith("-"):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or args[0] not in subs[0].choices:
            break
        parser = subs[0].choices[args[0]]
        path.append(args.pop(0))
    return parser, path


def _config_class(path: list[str], args: list[str]):
    from r2bench.methods import method_class
    from r2bench.r2rank import train_config as tc

    stages = {"synthesize": tc.SynthesizeConfig, "sft": tc.SFTConfig, "rl": tc.RLConfig,
              "features": tc.HeadTrainConfig, "head": tc.HeadTrainConfig}
    if path == ["run"] and "--method" in args:
        return method_class(args[args.index("--method") + 1]).Config
    if len(path) == 2 and path[0] == "r2rank":
        return stages[path[1]]
    return None


def _script_options(script: str) -> set[str]:
    tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
    return {arg.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "add_argument"
            for arg in node.args if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")} | {"--help"}


def _problems() -> list[str]:
    problems = []
    for item in all_items():
        if item.kind != "bash":
            continue
        for words in _commands(item.text):
            where = f"{item.where} `{' '.join(words)[:80]}`"
            args = _r2bench_args(words)
            if args is not None:
                parser, path = _parser_for(list(args))
                rest = args[len(path):]
                known = {o for a in parser._actions for o in a.option_strings}
                cls = _config_class(path, rest)
                keys = {f.name for f in dataclasses.fields(cls)} if cls else None
                accepts_config = path == ["run"]
                for i, w in enumerate(rest):
                    if w == "--set" and i + 1 < len(rest) and keys is not None:
                        key = rest[i + 1].partition("=")[0].replace("-", "_")
                        if key not in keys:
                            problems.append(f"{where}: --set {key}: not a key of {cls.__name__}")
                    elif w.startswith("--") and len(w) > 2 and w.split("=")[0] not in known:
                        flag = w.split("=")[0]
                        key = flag[2:].replace("-", "_")
                        if not (accepts_config and keys is not None and key in keys):
                            problems.append(f"{where}: `r2bench {' '.join(path)}` has no option {flag}"
                                            + (f" and its config has no key {key!r}" if accepts_config else ""))
                continue
            scripts = [w for w in words[:2] if w.endswith(".py") and w.startswith(("bench/", "scripts/"))]
            if words[0] in ("python", "python3") and scripts:
                if not (ROOT / scripts[0]).is_file():
                    problems.append(f"{where}: no such script {scripts[0]}")
                    continue
                options = _script_options(scripts[0])
                for w in words[words.index(scripts[0]) + 1:]:
                    if w.startswith("--") and w.split("=")[0] not in options:
                        problems.append(f"{where}: {scripts[0]} has no option {w.split('=')[0]}")
            if words[0] == "bash" and len(words) > 1 and words[1].endswith(".sh") and not (ROOT / words[1]).is_file():
                problems.append(f"{where}: no such script {words[1]}")
    return problems


def test_every_documented_option_and_config_key_exists():
    problems = _problems()
    assert not problems, "documented commands use options or keys that do not exist:\n" + "\n".join(problems)


def test_the_check_sees_skipped_commands_and_catches_a_wrong_key(monkeypatch):
    items = all_items()
    skipped = [it for it in items if it.skip and it.kind == "bash"]
    assert any("r2bench r2rank rl" in it.text for it in skipped)  # the GPU recipes are checked too
    broken = [it for it in skipped if any("lora_r=64" in c for c in map(" ".join, _commands(it.text)))][0]
    monkeypatch.setattr(broken, "text", broken.text.replace("lora_r=64", "lora_rank=64"))
    monkeypatch.setattr("tests.docs.test_commands.all_items", lambda: [broken])
    assert any("--set lora_rank: not a key of" in p for p in _problems())


@pytest.mark.parametrize("text, words", [
    ("r2bench run --method x \\\n  --set a=1  # comment", [["r2bench", "run", "--method", "x", "--set", "a=1"]]),
    ("vllm serve m --port 1 &\nr2bench run --method y", [["vllm", "serve", "m", "--port", "1"],
                                                         ["r2bench", "run", "--method", "y"]]),
    ("pip install a && bash scripts/x.sh", [["pip", "install", "a"], ["bash", "scripts/x.sh"]]),
])
def test_commands_are_split_as_the_shell_would(text, words):
    assert _commands(text) == words
