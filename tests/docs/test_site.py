"""The site builds with ``mkdocs build --strict``, and its generated parts come from the code."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.docs.fences import ROOT

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")


def _hook():
    spec = importlib.util.spec_from_file_location("r2bench_docs_hook", ROOT / "docs" / "hooks" / "r2bench_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = _mkdocs(ROOT / "mkdocs.yml", out)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out


def test_the_site_builds_strictly_with_every_page(site):
    nav_pages = []

    def walk(node):
        if isinstance(node, str):
            nav_pages.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    for page in nav_pages:
        html = site / (page[:-3] + "/index.html" if not page.endswith("index.md") else page[:-8] + "index.html")
        assert html.is_file(), f"{page} was not built"
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts}
    assert on_disk == set(nav_pages), f"pages not in the nav: {sorted(on_disk - set(nav_pages))}"


def test_generated_reference_lists_every_method_and_command(site):
    from r2bench.cli import build_parser
    from r2bench.methods import METHODS

    config = (site / "reference" / "config" / "index.html").read_text()
    for name in METHODS.in_order(entry_points=False):
        assert f'id="method-{name}"' in config, f"method {name} missing from the --set reference"
    assert 'id="llm-client-settings"' in config and "max_retry_after_s" in config
    assert "ppo_reduction" in config and "objective" in config  # RLConfig, HeadTrainConfig
    cli = (site / "reference" / "cli" / "index.html").read_text()
    verbs = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"][0].choices
    for verb in verbs:
        assert f"usage: r2bench {verb}" in cli, f"r2bench {verb} missing from the command-line reference"
    board = (site / "leaderboards" / "index.html").read_text()
    assert "Item co" in board and "0.6957" in board  # the ranked table, included from leaderboards/


def test_strict_build_fails_on_a_broken_link_an_unknown_anchor_and_a_missing_page(tmp_path):
    """Our mkdocs.yml's validation settings make these fatal (a looser setting would let them pass)."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[gone](no-such-page.md) and [anchor](other.md#no-such-heading)\n")
    (docs / "other.md").write_text("# Other\n\n## A heading\n")
    config.update(docs_dir=str(docs), hooks=[], nav=[{"Home": "index.md"}, {"Other": "other.md"}])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    proc = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "no-such-page.md" in log and "no-such-heading" in log, log[-3000:]

    config["nav"].append({"Missing": "missing.md"})
    (docs / "index.md").write_text("# Home\n")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    proc = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0 and "missing.md" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- the generator itself


@dataclass
class _DemoConfig:
    #: how many widgets to frobnicate
    #: (a second comment line)
    widgets: int = 3
    mode: str = "fast"  # fast or thorough
    ratio: float | None = None


class _DemoMethod:
    Config = _DemoConfig


def test_a_registered_method_appears_with_its_keys_defaults_and_comments():
    from r2bench.methods import METHODS

    hook = _hook()
    METHODS.register("zz-docs-demo", "tests.docs.test_site:_DemoMethod", "a method registered by a test")
    try:
        text = hook.expand("<!-- r2bench:config-methods -->", "reference/config.md")
        section = text[text.index("{#method-zz-docs-demo}"):]
        assert "- `widgets` (int, default `3`): how many widgets to frobnicate (a second comment line)\n" in section
        assert "- `mode` (str, default `fast`): fast or thorough\n" in section
        assert section.rstrip().endswith("- `ratio` (float or `none`, default `none`)")
        table = hook.expand("<!-- r2bench:methods -->", "methods/index.md")
        assert table.rstrip().endswith("**Other**\n\n- [`zz-docs-demo`](index.md): A method registered by a test. "
                                       "[`--set` keys](../reference/config.md#method-zz-docs-demo)")
    finally:
        METHODS.unregister("zz-docs-demo")


def test_a_changed_default_changes_the_reference(monkeypatch):
    hook = _hook()
    from baselines.sanity import ItemCooccurrenceConfig

    before = hook.expand("<!-- r2bench:config-method item-cooccurrence -->", "methods/sanity.md")
    assert "- `window` (int, default `5`): " in before
    fields = {f.name: f for f in dataclasses.fields(ItemCooccurrenceConfig)}
    monkeypatch.setattr(fields["window"], "default", 7)
    after = hook.expand("<!-- r2bench:config-method item-cooccurrence -->", "methods/sanity.md")
    assert "- `window` (int, default `7`): " in after


def test_an_unknown_directive_fails_the_build():
    with pytest.raises(ValueError, match="unknown directive r2bench:no-such-thing"):
        _hook().expand("text\n<!-- r2bench:no-such-thing -->\n", "index.md")


def test_every_method_setting_has_a_meaning():
    """The `--set` reference shows each key's comment; a key without one is undocumented."""
    from r2bench.llm.config import ClientConfig
    from r2bench.methods import METHODS, method_class

    hook = _hook()
    missing = []
    for name in METHODS.in_order(entry_points=False):
        cls = method_class(name).Config
        docs = hook.field_docs(cls)
        missing += [f"{name}: {f.name} ({cls.__module__}.{cls.__qualname__})" for f in dataclasses.fields(cls)
                    if f.init and f.name not in docs]
    docs = hook.field_docs(ClientConfig)
    missing += [f"LLM client: {f.name}" for f in dataclasses.fields(ClientConfig) if f.name not in docs]
    assert not missing, ("config keys without a `#:` comment above them (or a `#` comment after them), "
                         "so the --set reference cannot say what they mean:\n" + "\n".join(missing))


def test_the_site_loads_nothing_from_the_network(site):
    """No web fonts, scripts or stylesheets from elsewhere: the site reads the same offline (and in CI)."""
    import re

    remote = re.compile(r"<(?:link|script)\b[^>]*\b(?:href|src)=\"(?:https?:)?//[^\"]+\"")
    found = {p.relative_to(site).as_posix(): remote.findall(p.read_text(encoding="utf-8"))
             for p in site.rglob("*.html")}
    assert not {k: v for k, v in found.items() if v}
