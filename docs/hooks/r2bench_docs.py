"""MkDocs hook: the parts of the docs that are generated from the code at build time.

A page asks for generated content with a directive on a line of its own::

    <!-- r2bench:config-methods -->        every registered method's Config (the --set keys)
    <!-- r2bench:config-method NAME -->    one method's Config
    <!-- r2bench:config-training -->       the R2Rank training configs (r2bench/r2rank/train_config.py)
    <!-- r2bench:config-client -->         the LLM client settings (r2bench/llm/config.py)
    <!-- r2bench:methods -->               the registered methods, by Table 2 group, with their pages
    <!-- r2bench:cli -->                   ``--help`` of every verb
    <!-- r2bench:board DATASET -->         the ranked table of leaderboards/DATASET/README.md
    <!-- r2bench:include PATH -->          a file of the repository (the data cards)

Nothing generated is committed, so nothing can go stale: the methods come from the
registry (``r2bench.methods.METHODS``, built-ins only, in registration order), the keys
from the dataclasses themselves (fields, types, defaults, and the ``#:`` comment above a
field or the ``#`` comment after it). An unknown directive fails the build.

The hook documents the checkout it sits in: it puts the repository root first on
``sys.path`` before importing r2bench, and refuses an r2bench imported from elsewhere.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import os
import posixpath
import re
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIRECTIVE = re.compile(r"^[ \t]*<!--\s*r2bench:([\w-]+)(?:[ \t]+([^\n]*?))?\s*-->[ \t]*$", re.M)

#: where each Table 2 group is documented (a method's own docs/methods/<name>.md wins,
#: and a registry entry may name its page with ``docs="..."`` in its meta)
GROUP_PAGES = {
    "Sanity baselines": "methods/sanity.md",
    "Conventional recommenders": "methods/recbole.md",
    "LLM-based": "methods/trainable.md",
    "R2Rank": "r2rank/inference.md",
    "Other": "methods/index.md",
}
#: the commands that read each training config (the docstrings say more)
TRAINING_COMMANDS = {
    "SynthesizeConfig": "r2bench r2rank synthesize",
    "SFTConfig": "r2bench r2rank sft",
    "RLConfig": "r2bench r2rank rl",
    "HeadTrainConfig": "r2bench r2rank features / r2bench r2rank head",
}


def _import_r2bench():
    if str(ROOT) not in sys.path[:1]:
        sys.path.insert(0, str(ROOT))
    import r2bench

    where = Path(r2bench.__file__).resolve()
    if ROOT not in where.parents:
        raise RuntimeError(f"the docs of {ROOT} would document the r2bench at {where}: "
                           f"build them with PYTHONPATH={ROOT}")
    return r2bench


# --------------------------------------------------------------------------- config tables


def field_docs(cls: type) -> dict[str, str]:
    """Each field's comment: the ``#:`` lines right above it, else the ``#`` comment after it.
    Base classes first, so a subclass that redefines a field without a comment keeps the base's."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        node = ast.parse(source).body[0]
        for stmt in getattr(node, "body", []):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            above, i = [], stmt.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                above.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            text = " ".join(above) or _trailing_comment(lines[stmt.end_lineno - 1])
            if text:
                docs[stmt.target.id] = text
    return docs


def _trailing_comment(line: str) -> str:
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            if tok.type == tokenize.COMMENT:
                return tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return ""


def type_text(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " / ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or `none`" if type(None) in args else "")
    if origin in (list, tuple):
        return f"list of {type_text(args[0]) if args else 'values'} (comma-separated)"
    if origin is dict or tp is dict:
        return "mapping (YAML)"
    if tp is typing.Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if value is None:
        return "`none`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _own_doc(cls: type) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    if not doc or doc.startswith(cls.__name__ + "("):  # dataclasses' generated signature
        return ""
    return inspect.cleandoc(doc)


def config_list(cls: type, skip: set[str] = frozenset()) -> str:
    """One bullet per key: ``- `key` (type, default `value`): meaning`` (a list reads well on a phone too)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        meaning = docs.get(f.name, "")
        rows.append(f"- `{f.name}` ({type_text(hints[f.name])}, default {default_text(f)})"
                    + (f": {meaning}" if meaning else ""))
    return "\n".join(rows)


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else ""


def config_section(cls: type, page: str, level: int = 3) -> str:
    """The class's docstring and its table; a ClientConfig subclass lists only its own keys
    (and the client keys whose default it changes), then points to the client table."""
    from r2bench.llm.config import ClientConfig

    out = [f"Config class: `{cls.__module__}.{cls.__qualname__}`."]
    doc = _own_doc(cls)
    if doc:
        out.append(doc)
    skip: set[str] = set()
    if issubclass(cls, ClientConfig) and cls is not ClientConfig:
        base = {f.name: f for f in dataclasses.fields(ClientConfig)}
        mine = {f.name: f for f in dataclasses.fields(cls)}
        skip = {n for n in base if default_text(base[n]) == default_text(mine[n])}
    if not dataclasses.fields(cls):
        if not doc:
            out.append("No settings.")
    else:
        keys = config_list(cls, skip)
        if keys:
            out.append(keys)
        if skip:
            link = _rel(page, "reference/config.md") + "#llm-client-settings"
            out.append(f"It also takes every [LLM client setting]({link}) (`base_url`, `model`, "
                       f"`api_key_env`, `concurrency`, `cache`, ...), with the defaults listed there.")
    return "\n\n".join(out)


def method_page(name: str, entry=None) -> str:
    from r2bench.report.tables import group_of

    if entry is not None and entry.meta.get("docs"):
        return entry.meta["docs"]
    if (ROOT / "docs" / "methods" / f"{name}.md").is_file():
        return f"methods/{name}.md"
    if name.startswith("llm-"):
        return "methods/llm-api.md"
    return GROUP_PAGES.get(group_of(name), "methods/index.md")


def builtin_methods() -> list:
    from r2bench.methods import METHODS

    return [METHODS.get(n) for n in METHODS.in_order(entry_points=False)]


def render_method_config(name: str, page: str, level: int = 3) -> str:
    from r2bench.methods import METHODS, method_class

    entry = METHODS.get(name)
    cls = method_class(name).Config
    extra = f" Needs `pip install 'r2bench[{entry.extra}]'`." if entry.extra else ""
    return f"{_sentence(entry.description)}{extra}\n\n" + config_section(cls, page, level)


def render_config_methods(page: str) -> str:
    out = []
    for entry in builtin_methods():
        doc = _rel(page, method_page(entry.name, entry))
        text = render_method_config(entry.name, page)
        first, _, rest = text.partition("\n\n")
        out.append(f"### `{entry.name}` {{#method-{entry.name}}}\n\n{first} [How to run it]({doc}).\n\n{rest}")
    return "\n\n".join(out)


def training_config_classes() -> list[type]:
    """The dataclasses of r2bench/r2rank/train_config.py that a command builds (named in r2bench/commands/)."""
    import r2bench.r2rank.train_config as tc

    commands = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "r2bench" / "commands").glob("*.py")))
    return [obj for name, obj in vars(tc).items()
            if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == tc.__name__
            and re.search(rf"\b{name}\b", commands)]


def render_config_training(page: str) -> str:
    out = []
    for cls in training_config_classes():
        command = TRAINING_COMMANDS.get(cls.__name__)
        head = f"### `{command}`" if command else f"### `{cls.__name__}`"
        out.append(f"{head} {{#config-{cls.__name__.lower()}}}\n\n" + config_section(cls, page))
    return "\n\n".join(out)


def render_config_client(page: str) -> str:
    from r2bench.llm.config import ClientConfig

    return config_section(ClientConfig, page)


# --------------------------------------------------------------------------- methods, CLI, boards


def render_methods(page: str) -> str:
    """The registered methods under their Table 2 group: a list per group (it reads well on a phone)."""
    from r2bench.report.tables import GROUP_ORDER, group_of

    entries = builtin_methods()
    out = []
    for group in GROUP_ORDER:
        members = [e for e in entries if group_of(e.name) == group]
        if not members:
            continue
        rows = [f"**{group}**\n"]
        for e in members:
            doc = _rel(page, method_page(e.name, e))
            keys = _rel(page, "reference/config.md") + f"#method-{e.name}"
            extra = f" Needs the `{e.extra}` extra." if e.extra else ""
            rows.append(f"- [`{e.name}`]({doc}): {_sentence(e.description)}{extra} [`--set` keys]({keys})")
        out.append("\n".join(rows))
    return "\n\n".join(out)


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def render_cli(page: str) -> str:
    from r2bench.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        parser = build_parser()
        out = ["```text\n" + parser.format_help().rstrip() + "\n```"]
        for name, sub in _subparsers(parser):
            out.append(f"### `r2bench {name}`\n\n```text\n{sub.format_help().rstrip()}\n```")
            for subname, subsub in _subparsers(sub):
                out.append(f"#### `r2bench {name} {subname}`\n\n```text\n{subsub.format_help().rstrip()}\n```")
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n\n".join(out)


def render_board(dataset: str, page: str) -> str:
    """The ranked table and its legend, as `r2bench leaderboard render` wrote them."""
    path = ROOT / "leaderboards" / dataset / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"r2bench:board {dataset}: no {path.relative_to(ROOT)}")
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| # |"))
    end = next((i for i, line in enumerate(lines) if line.startswith("## ") and i > start), len(lines))
    return "\n".join(lines[start:end]).strip()


def render_include(path: str, page: str) -> str:
    target = (ROOT / path).resolve()
    if ROOT not in target.parents or not target.is_file():
        raise FileNotFoundError(f"r2bench:include {path}: not a file of the repository")
    return target.read_text(encoding="utf-8")


def _rel(page: str, target: str) -> str:
    return posixpath.relpath(target, posixpath.dirname(page) or ".")


RENDERERS = {
    "config-methods": lambda arg, page: render_config_methods(page),
    "config-method": lambda arg, page: render_method_config(arg, page),
    "config-training": lambda arg, page: render_config_training(page),
    "config-client": lambda arg, page: render_config_client(page),
    "methods": lambda arg, page: render_methods(page),
    "cli": lambda arg, page: render_cli(page),
    "board": lambda arg, page: render_board(arg, page),
    "include": lambda arg, page: render_include(arg, page),
}


def expand(markdown: str, page: str) -> str:
    """``markdown`` with every directive replaced by what it generates (``page``: the
    page's path under docs/, for relative links)."""
    _import_r2bench()

    def sub(m: re.Match) -> str:
        name, arg = m.group(1), (m.group(2) or "").strip()
        if name not in RENDERERS:
            raise ValueError(f"docs/{page}: unknown directive r2bench:{name} (known: {', '.join(RENDERERS)})")
        return RENDERERS[name](arg, page)

    return DIRECTIVE.sub(sub, markdown)


# --------------------------------------------------------------------------- MkDocs events


def on_page_markdown(markdown, page, config, files, **kwargs):
    return expand(markdown, page.file.src_uri)
