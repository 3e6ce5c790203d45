"""DB-less Kong: kongsplit as a sidecar edits the node's /config and watches its hash."""

from __future__ import annotations

from typing import Any

import aiohttp
from daemon_support import (
    CANARY_T,
    KEY,
    REPLICASETS,
    ROLLOUTS,
    STABLE_T,
    UPSTREAM,
    Harness,
    eventually,
    metric,
    reconciler,
    weights,
)
from kong_configs import MANAGED_UPSTREAM, realistic_config

from kongsplit.kong import configtext
from kongsplit.sim import objects
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


async def _exported(kong: KongSim) -> dict[str, Any]:
    """The node's config as Kong's GET /config text says, read with lyaml 6.2.8's rules
    (kongsplit.kong.configtext, held to the real lyaml by tests/configtext/)."""
    async with aiohttp.ClientSession() as http, http.get(f"{kong.url}/config") as resp:
        assert resp.status == 200
        text = (await resp.json())["config"]
    config = configtext.load(text)
    assert isinstance(config, dict)
    return config


def _without(config: dict[str, Any], upstreams: set[str]) -> dict[str, Any]:
    """``config`` minus the named upstreams and their targets (what kongsplit may change)."""
    ids = {u["id"] for u in config.get("upstreams") or () if u["name"] in upstreams}
    out = dict(config)
    out["upstreams"] = [u for u in config.get("upstreams") or () if u["id"] not in ids]
    out["targets"] = [t for t in config.get("targets") or () if t["upstream"] not in ids]
    return out


async def test_a_config_full_of_tricky_values_is_edited_without_changing_them(
    harness: Harness,
) -> None:
    """A node whose config holds every value YAML dialects disagree on (zero-padded names,
    HH:MM headers, 1e3 hosts, timestamps in tags, yes/no, '=', '<<', PEM certificates, key-auth
    keys, vault references; tests/kong_configs.py): two Rollouts converge through the sidecar,
    and every entity other than their upstreams and targets is exactly as it was."""
    h = harness
    await h.seed()
    await h.create(REPLICASETS, objects.replicaset("checkout", "v1", 4, 4))
    await h.create(
        ROLLOUTS,
        objects.rollout(
            "checkout",
            upstream=MANAGED_UPSTREAM,
            stable_service="web-stable",
            canary_service="web-canary",
        ),
    )
    async with KongSim(mode="off") as kong:
        kong.external_config_push(configtext.dump_json(realistic_config()))
        before = await _exported(kong)
        await h.start(
            h.settings(
                kong={
                    "url": kong.url,
                    "configPollInterval": 0.1,
                    # The config's owner lets namespace shop drive its checkout upstream.
                    "allowUpstreams": [{"namespace": "shop", "upstreams": [MANAGED_UPSTREAM]}],
                }
            )
        )
        await eventually(
            lambda: weights(kong) == {STABLE_T: 100, CANARY_T: 0}, what="web converged"
        )
        await eventually(
            lambda: weights(kong, MANAGED_UPSTREAM) == {STABLE_T: 100, CANARY_T: 0},
            what="checkout converged",
        )
        after = await _exported(kong)
    managed = {UPSTREAM, MANAGED_UPSTREAM}
    assert _without(after, managed) == _without(before, managed)
    assert sum(1 for u in after["upstreams"] if u["name"] in managed) == 2
