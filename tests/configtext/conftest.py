"""Fixtures for the DB-less YAML tests: the real lyaml (luajit + Debian's lua-yaml 6.2.8)."""

from __future__ import annotations

import pytest
from lyaml_support import Lyaml, find_luajit


@pytest.fixture(scope="session")
def lyaml() -> Lyaml:
    oracle = Lyaml(find_luajit())
    (answer,) = oracle.load(["k: v"])
    assert answer.ok, f"luajit cannot run lyaml: {answer.error}"
    return oracle
