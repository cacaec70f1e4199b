import os

import pytest

from r2bench.atomic import atomic_path, sha256_file, write_json
from r2bench.errors import MissingExtraError, R2BenchError
from r2bench.extras import require
from r2bench.registry import Registry


def test_registry_lazy_load_and_did_you_mean():
    reg = Registry("thing")
    reg.register("alpha", "os.path:join", "joins")
    assert reg.load("alpha") is os.path.join
    with pytest.raises(R2BenchError, match="did you mean 'alpha'"):
        reg.get("alpah")


def test_registry_rejects_duplicate_names():
    reg = Registry("thing")
    reg.register("a", "os:sep")
    with pytest.raises(ValueError):
        reg.register("a", "os:sep")


def test_atomic_file_not_left_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_replaces_whole(tmp_path):
    target = tmp_path / "bench"
    for content in ("one", "two"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "f.txt").write_text(content)
    assert (target / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]


def test_write_json_is_deterministic(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert sha256_file(tmp_path / "a.json") == sha256_file(tmp_path / "b.json")


def test_missing_extra_names_the_install_line():
    with pytest.raises(MissingExtraError, match=r"pip install 'r2bench\[plot\]'"):
        require("definitely_not_installed_pkg_xyz", extra="plot")


def test_third_party_methods_register_through_entry_points(tmp_path, monkeypatch):
    """A package that declares `[project.entry-points."r2bench.methods"]` shows up by name."""
    dist = tmp_path / "thirdparty_rec-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-rec\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[r2bench.methods]\nmy-method = thirdparty_rec:MyMethod\n")
    (tmp_path / "thirdparty_rec.py").write_text(
        "from r2bench.methods import BaseMethod\n\nclass MyMethod(BaseMethod):\n    name = 'my-method'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("method", entry_point_group="r2bench.methods")
    reg.register("random", "baselines.sanity:RandomMethod")
    assert "my-method" in reg.names()
    cls = reg.load("my-method")
    assert cls.__name__ == "MyMethod" and cls.name == "my-method"
    assert reg.get("my-method").meta["third_party"] is True
