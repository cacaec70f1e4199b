"""``custom``: a user's own interactions and items, described by a small YAML file.

Example (paths are relative to the YAML file)::

    name: my-shop                      # the benchmark's dataset name
    interactions:
      path: interactions.parquet       # .parquet or .csv
      timestamp_unit: s                # s | ms | us | ns (default ms); datetime columns need none
      columns: {user_id: uid, item_id: sku, timestamp: ts, rating: stars}   # optional renames
    items:
      path: items.csv
      columns: {item_id: sku, title: name}
      text_fields: [brand, category]   # default: every other column
    users:                             # optional: user profiles for prompts
      path: users.csv
      fields: [age, country]
    window: {start: 2021-10-01, end: 2023-10-01}   # optional, UTC dates or ms
    build: {title_rule: nonempty}      # optional BuildSpec defaults

Command-line construction flags still override ``window`` and ``build``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from r2bench.data.build import BuildSpec
from r2bench.data.sources.base import Source, SourceData, file_record
from r2bench.errors import DataError

UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _bound_ms(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise DataError(f"{where}: expected a date (YYYY-MM-DD) or milliseconds, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp() * 1000)
    try:
        d = datetime.strptime(str(value), "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise DataError(f"{where}: expected a date (YYYY-MM-DD) or milliseconds, got {value!r}") from None
    return int(d.timestamp() * 1000)


def _scan(path: Path, where: str) -> pl.LazyFrame:
    if not path.is_file():
        raise DataError(f"{where}: file not found: {path}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix == ".parquet":
        return pl.scan_parquet(path)
    if suffix in (".csv", ".csv.gz", ".tsv"):
        return pl.scan_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema=False)
    raise DataError(f"{where}: {path.name}: expected a .parquet, .csv or .tsv file")


class CustomDataset(Source):
    def __init__(self, dataset: str, spec_file: str | Path | None = None, **options: Any):
        super().__init__(dataset, **options)
        if not spec_file:
            raise DataError("the custom dataset needs a YAML spec: r2bench prepare custom --spec FILE")
        self.spec_path = Path(spec_file)
        if not self.spec_path.is_file():
            raise DataError(f"custom dataset spec not found: {self.spec_path}")
        try:
            self.spec = yaml.safe_load(self.spec_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DataError(f"{self.spec_path}: not valid YAML ({exc})") from None
        if not isinstance(self.spec, dict):
            raise DataError(f"{self.spec_path}: expected a mapping with name, interactions and items")
        self.name = self._name()
        self.spec_defaults = self._spec_defaults()

    def _name(self) -> str:
        from r2bench.data.registry import DATASETS

        name = self.spec.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise DataError(
                f"{self.spec_path}: 'name' must be a lowercase dataset name (letters, digits, . _ -), got {name!r}"
            )
        if name in DATASETS:
            raise DataError(f"{self.spec_path}: name {name!r} is a registered dataset; choose another name")
        return name

    def _spec_defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        window = self.spec.get("window") or {}
        if not isinstance(window, dict):
            raise DataError(f"{self.spec_path}: 'window' must be a mapping with start and/or end")
        out["window_start_ms"] = _bound_ms(window.get("start"), f"{self.spec_path}: window.start")
        out["window_end_ms"] = _bound_ms(window.get("end"), f"{self.spec_path}: window.end")
        build = self.spec.get("build") or {}
        unknown = sorted(set(build) - set(BuildSpec.__dataclass_fields__))
        if unknown:
            raise DataError(f"{self.spec_path}: unknown build parameter(s) {', '.join(unknown)}")
        out.update(build)
        return out

    def _section(self, key: str, required: bool = True) -> dict[str, Any] | None:
        sec = self.spec.get(key)
        if sec is None and not required:
            return None
        if not isinstance(sec, dict) or "path" not in sec:
            raise DataError(f"{self.spec_path}: '{key}' must be a mapping with at least 'path'")
        return sec

    def _frame(self, key: str, needed: tuple[str, ...]) -> tuple[pl.LazyFrame, Path]:
        """The section's file, lazily, after checking that its needed columns exist."""
        sec = self._section(key)
        path = (self.spec_path.parent / sec["path"]).resolve()
        lf = _scan(path, f"{self.spec_path}: {key}")
        renames = sec.get("columns") or {}
        have = lf.collect_schema().names()
        for col in needed:
            src = renames.get(col, col)
            if src not in have:
                raise DataError(f"{path}: missing column {src!r} for {col} (columns: {', '.join(have)})")
        return lf, path

    def load(self) -> SourceData:
        files = []
        # interactions
        sec = self._section("interactions")
        lf, ipath = self._frame("interactions", ("user_id", "item_id", "timestamp"))
        ren = sec.get("columns") or {}
        cols = lf.collect_schema()
        unit = str(sec.get("timestamp_unit", "ms"))
        if unit not in UNITS:
            raise DataError(f"{self.spec_path}: interactions.timestamp_unit must be one of {', '.join(UNITS)}, got {unit!r}")
        ts_src = ren.get("timestamp", "timestamp")
        ts = pl.col(ts_src)
        if isinstance(cols[ts_src], pl.Datetime):
            ts_ms = ts.dt.epoch("ms")
        elif cols[ts_src] == pl.Date:
            ts_ms = ts.cast(pl.Datetime("ms")).dt.epoch("ms")
        else:
            ts_ms = (ts.cast(pl.Float64, strict=False) * UNITS[unit]).round().cast(pl.Int64)
        exprs = [
            pl.col(ren.get("user_id", "user_id")).cast(pl.String).alias("user_id"),
            pl.col(ren.get("item_id", "item_id")).cast(pl.String).alias("item_id"),
            ts_ms.alias("timestamp"),
        ]
        if ren.get("rating", "rating") in cols.names():
            exprs.append(pl.col(ren.get("rating", "rating")).cast(pl.Float64, strict=False).alias("rating"))
        inter = lf.with_row_index("_order").select(*exprs, pl.col("_order"))
        try:
            inter = inter.collect()
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{ipath}: cannot read the interactions ({exc})") from None
        nulls = inter.select(pl.any_horizontal(pl.col("user_id", "item_id", "timestamp").is_null()).arg_true())
        if nulls.height:
            row = int(nulls.item(0, 0))
            raise DataError(
                f"{ipath}: row {row + 1}: user_id, item_id and timestamp must be set and the timestamp numeric "
                f"(unit {unit}) or a datetime"
            )
        files.append(file_record(ipath))
        # items
        isec = self._section("items")
        ilf, item_path = self._frame("items", ("item_id", "title"))
        iren = isec.get("columns") or {}
        have = ilf.collect_schema().names()
        id_src, title_src = iren.get("item_id", "item_id"), iren.get("title", "title")
        text_fields = isec.get("text_fields")
        if text_fields is None:
            text_fields = [c for c in have if c not in (id_src, title_src)]
        missing = [c for c in text_fields if c not in have]
        if missing:
            raise DataError(f"{item_path}: text field(s) {', '.join(missing)} not found (columns: {', '.join(have)})")
        items = ilf.select(
            pl.col(id_src).cast(pl.String).alias("item_id"), pl.col(title_src).cast(pl.String).alias("title"),
            *[pl.col(c).cast(pl.String) for c in text_fields],
        ).collect()
        files.append(file_record(item_path))
        # users
        users = None
        usec = self._section("users", required=False)
        if usec is not None:
            ulf, upath = self._frame("users", ("user_id",))
            uren = usec.get("columns") or {}
            uhave = ulf.collect_schema().names()
            uid = uren.get("user_id", "user_id")
            fields = usec.get("fields") or [c for c in uhave if c != uid]
            missing = [c for c in fields if c not in uhave]
            if missing:
                raise DataError(f"{upath}: profile field(s) {', '.join(missing)} not found (columns: {', '.join(uhave)})")
            users = ulf.select(pl.col(uid).cast(pl.String).alias("user_id"), *[pl.col(c).cast(pl.String) for c in fields]).collect()
            files.append(file_record(upath))
        return SourceData(
            interactions=inter,
            items=items,
            users=users,
            info={"name": f"custom ({self.spec_path.name})", "files": files, "timestamp_unit": unit, "spec": self.spec},
            where=str(ipath),
            dataset=self.name,
        )
