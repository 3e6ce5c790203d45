"""Fixtures for the daemon tests (helpers live in daemon_support)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_support import Harness
from kmock_shims import KubeMock, kmock_watch_shim, kube_mock  # noqa: F401 - fixtures

from kongsplit.sim.kongsim import KongSim


@pytest.fixture()
async def harness(kube_mock: KubeMock, tmp_path: Path) -> AsyncIterator[Harness]:  # noqa: F811
    async with KongSim() as kong:
        h = Harness(kube_mock, kong, tmp_path)
        try:
            yield h
        finally:
            await h.close()
