"""DB-less Kong: kongsplit as a sidecar edits the node's /config and watches its hash."""

from __future__ import annotations

import asyncio

from daemon_support import CANARY_T, STABLE_T, UPSTREAM, Harness, eventually, metric, weights

from kongsplit.sim.kongsim import KongSim

OWNER_CONFIG = {
    "_format_version": "3.0",
    # The owner of the config (KIC, declarative_config) consents with the tag.
    "upstreams": [{"name": UPSTREAM, "tags": ["managed-by-kongsplit"]}],
    "services": [{"name": "web", "host": UPSTREAM, "port": 80}],
}


async def test_dbless_sidecar_applies_and_puts_back_foreign_configs(harness: Harness) -> None:
    h = harness
    await h.seed()
    async with KongSim(mode="off") as kong:
        kong.external_config_push(OWNER_CONFIG)  # the owner (KIC, declarative_config) loads first
        daemon = await h.start(h.settings(kong={"url": kong.url, "configPollInterval": 0.1}))
        await eventually(
            lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0}, what="applied via /config"
        )
        # Another writer replaces the whole config: the targets are gone.
        kong.external_config_push(OWNER_CONFIG)
        await eventually(lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0}, what="re-applied")
        await eventually(
            lambda: metric(daemon, "kongsplit_drift_corrections_total", kind="foreign_config") == 1,
            what="foreign_config counted",
        )
        # The node restarts empty: nothing may be posted until its owner loads a config again.
        kong.restart_node(0)
        posts_before = sum(
            1 for r in kong.requests if r.method == "POST" and r.path.startswith("/config")
        )
        await eventually(
            lambda: daemon.reconciler is not None and daemon.reconciler.kong.mode is not None
        )
        await asyncio.sleep(0.6)  # several config polls (0.1 s) and back-off retries
        posts_after = sum(
            1 for r in kong.requests if r.method == "POST" and r.path.startswith("/config")
        )
        assert posts_after == posts_before, "posted onto a node reporting the empty hash"
        kong.external_config_push(OWNER_CONFIG)
        await eventually(
            lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0}, within=8, what="after restart"
        )
        await eventually(
            lambda: metric(daemon, "kongsplit_drift_corrections_total", kind="restart") == 1,
            what="restart counted",
        )
        assert metric(daemon, "kongsplit_drift_corrections_total", kind="foreign_config") == 1
