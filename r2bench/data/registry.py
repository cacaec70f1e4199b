"""Registered datasets. Targets are lazy: listing imports no source module."""

from __future__ import annotations

from r2bench.registry import Registry

DATASETS: Registry = Registry("dataset")

DATASETS.register(
    "movielens-100k", "r2bench.data.sources.movielens:MovieLens100K",
    "MovieLens-100K read from the copy inside the recbole package (offline default)",
    source="recbole package (GroupLens ml-100k)", license="GroupLens research terms, no redistribution",
)
for _name, _cat, _label in (
    ("amazon-musical-instruments", "Musical_Instruments", "Musical Instruments"),
    ("amazon-movies-and-tv", "Movies_and_TV", "Movies & TV"),
    ("amazon-video-games", "Video_Games", "Video Games"),
):
    DATASETS.register(
        _name, "r2bench.data.sources.amazon2023:Amazon2023",
        f"Amazon Reviews 2023, {_label}, window 2021-10-01..2023-10-01",
        source=f"Amazon Reviews 2023 ({_cat}), McAuley Lab", license="research use (no license assigned)",
        category=_cat,
    )
DATASETS.register(
    "custom", "r2bench.data.sources.custom:CustomDataset",
    "your own interactions + items described by a YAML file (--spec FILE)",
    source="user-provided", license="user-provided",
)
