from dataclasses import dataclass, field
from typing import Literal

import pytest

from r2bench.config import build_config, parse_set_args
from r2bench.errors import R2BenchError


@dataclass
class Cfg:
    epochs: int = 3
    lr: float = 1e-3
    name: str = "x"
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    layers: list[int] = field(default_factory=lambda: [1, 2])
    path: str | None = None


def test_set_args_are_coerced_to_declared_types():
    cfg = build_config(Cfg, parse_set_args(["epochs=7", "lr=0.5", "flag=true", "mode=b", "layers=4,5", "path=none"]))
    assert cfg == Cfg(epochs=7, lr=0.5, flag=True, mode="b", layers=[4, 5], path=None)


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 10\nname: from-yaml\n")
    cfg = build_config(Cfg, {"epochs": "2"}, f)
    assert (cfg.epochs, cfg.name) == (2, "from-yaml")


@pytest.mark.parametrize(
    "items, message",
    [
        (["epoch=1"], "did you mean 'epochs'"),
        (["epochs=abc"], "expected int"),
        (["flag=maybe"], "expected true/false"),
        (["mode=c"], "not one of"),
        (["noequals"], "key=value"),
    ],
)
def test_bad_values_name_the_key(items, message):
    with pytest.raises(R2BenchError, match=message):
        build_config(Cfg, parse_set_args(items))


def test_config_file_must_be_a_mapping(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(R2BenchError, match="mapping"):
        build_config(Cfg, {}, f)


def test_option_overrides_pair_tokens_and_reject_strays():
    from r2bench.config import option_overrides

    assert option_overrides(["--epochs=3", "--lr", "0.1", "--flag=true"]) == ["epochs=3", "lr=0.1", "flag=true"]
    with pytest.raises(R2BenchError, match="unrecognized argument 'stray'"):
        option_overrides(["--epochs=3", "stray"])
