"""Typed per-component configs.

Each method (and other configurable component) declares a dataclass with defaults.
``build_config`` fills it from an optional YAML file and ``--set key=value``
overrides (later wins), coercing strings to the declared field types and naming
unknown keys with a did-you-mean. Nothing here reads ``sys.argv`` or globals.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from r2bench.errors import R2BenchError


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """Turn ``["a=1", "b=x"]`` into ``{"a": "1", "b": "x"}`` (values stay strings)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise R2BenchError(f"--set expects key=value, got {item!r}")
        out[key] = value
    return out


def option_overrides(tokens: list[str]) -> list[str]:
    """Turn leftover ``--key=value`` / ``--key value`` command-line tokens into ``key=value``.

    Raises on anything else, naming it, so a stray positional never passes silently.
    """
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--") and "=" in tok:
            out.append(tok[2:])
        elif tok.startswith("--") and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out.append(f"{tok[2:]}={tokens[i + 1]}")
            i += 1
        else:
            raise R2BenchError(f"unrecognized argument {tok!r} (config options are --key=value or --set key=value)")
        i += 1
    return out


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise R2BenchError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise R2BenchError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise R2BenchError(f"{path}: expected a mapping of key: value at the top level")
    return data


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except (ValueError, TypeError, R2BenchError) as exc:
                errors.append(str(exc))
        raise R2BenchError(f"config {key}: cannot read {value!r} as {tp}")
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value in args:
            return value
        sval = str(value)
        for a in args:
            if str(a) == sval:
                return a
        raise R2BenchError(f"config {key}: {value!r} is not one of {list(args)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise R2BenchError(f"config {key}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise R2BenchError(f"config {key}: expected {tp.__name__}, got {value!r}")
        try:
            if tp is int:
                try:
                    return int(str(value).replace("_", ""))
                except ValueError:
                    f = float(value)
                    if f != int(f):
                        raise
                    return int(f)
            return float(value)
        except (TypeError, ValueError):
            raise R2BenchError(f"config {key}: expected {tp.__name__}, got {value!r}") from None
    if tp is str:
        return str(value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        inner = args[0] if args else Any
        seq = [_coerce(v, inner, key) for v in value]
        return seq if origin is list else tuple(seq)
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise R2BenchError(f"config {key}: expected a mapping, got {value!r}")
        return value
    return value


def build_config(cls: type, overrides: dict[str, Any] | None = None, config_file: str | Path | None = None) -> Any:
    """Instantiate dataclass ``cls`` from defaults, a YAML file, then overrides."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_yaml_config(config_file))
    values.update(overrides or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in values.items():
        norm = key.replace("-", "_")
        if norm not in fields:
            close = difflib.get_close_matches(norm, list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise R2BenchError(
                f"unknown config key {key!r} for {cls.__name__}{hint} (known: {', '.join(sorted(fields))})"
            )
        kwargs[norm] = _coerce(value, hints[norm], norm)
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
