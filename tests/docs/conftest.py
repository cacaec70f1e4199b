"""Fixtures of the docs tests: one workspace (shims, a prepared MovieLens-100K) for the session."""

from __future__ import annotations

import pytest

from tests.docs.fences import Workspace


@pytest.fixture(scope="session")
def docs_workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("docs-commands"))
