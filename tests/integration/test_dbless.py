"""DB-less Kong: kongsplit as a sidecar edits the node's /config and watches its hash."""

from __future__ import annotations

from daemon_support import (
    CANARY_T,
    KEY,
    STABLE_T,
    UPSTREAM,
    Harness,
    eventually,
    metric,
    reconciler,
    weights,
)

from kongsplit.sim.kongsim import KongSim


def config_posts(kong: KongSim) -> int:
    return sum(1 for r in kong.requests if r.method == "POST" and r.path.startswith("/config"))


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
        posts_before = config_posts(kong)
        # Witness: the config watch saw the empty hash and the re-apply it asked for was
        # refused, then refused again on a back-off retry (each a chance to post).
        rec = reconciler(daemon)
        await eventually(
            lambda: (
                KEY in rec.states
                and rec.states[KEY].failures >= 2
                and "has no configuration loaded yet" in (rec.states[KEY].last_error or "")
            ),
            what="the re-apply refused twice on the empty node",
        )
        assert config_posts(kong) == posts_before, "posted onto a node reporting the empty hash"
        kong.external_config_push(OWNER_CONFIG)
        await eventually(
            lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0}, within=8, what="after restart"
        )
        await eventually(
            lambda: metric(daemon, "kongsplit_drift_corrections_total", kind="restart") == 1,
            what="restart counted",
        )
        assert metric(daemon, "kongsplit_drift_corrections_total", kind="foreign_config") == 1
