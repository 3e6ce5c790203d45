"""Nobody can steal another team's traffic: ownership of an upstream is read from Kong (the
owner tags kongsplit puts there), so the same Rollout wins on every replica, every start, in any
list order; and an upstream kongsplit did not create is driven only with the consent of whoever
owns Kong's configuration. The real daemon against kmock and the Kong simulator."""

from __future__ import annotations

import pytest
from daemon_support import (
    CANARY_T,
    REPLICASETS,
    ROLLOUTS,
    SERVICES,
    STABLE_T,
    UPSTREAM,
    Harness,
    eventually,
    metric,
    rollout,
    weights,
)
from kmock_shims import delete

from kongsplit.kong.targets import owner_tags_for
from kongsplit.sim import objects


async def _thief(h: Harness, namespace: str) -> None:
    """Another team's Rollout, with Services of its own, naming shop's upstream."""
    await h.create(SERVICES, objects.service("grab-stable", "10.96.9.10", "v1", namespace))
    await h.create(SERVICES, objects.service("grab-canary", "10.96.9.11", "v1", namespace))
    await h.create(REPLICASETS, objects.replicaset("grab", "v1", 4, 4, namespace))
    await h.create(ROLLOUTS, objects.rollout("grab", namespace, upstream=UPSTREAM))


async def _refused_with(h: Harness, daemon: object, name: str, words: str) -> None:
    await eventually(
        lambda: metric(daemon, "kongsplit_rollouts", state="refused") >= 1,  # type: ignore[arg-type]
        what="refused",
    )
    rec = daemon.reconciler  # type: ignore[attr-defined]
    state = next(s for k, s in rec.states.items() if k.name == name)
    assert state.condition == "refused" and words in (state.last_error or "")


@pytest.mark.parametrize("restarts", [0, 1, 2])
async def test_the_owner_recorded_in_kong_keeps_its_upstream_across_restarts(
    harness: Harness, restarts: int
) -> None:
    """shop/web owns the upstream; a Rollout of namespace "aaa" (first in every list order)
    names it too. Refused while running, and after every restart too."""
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="owner")
    await _thief(h, "aaa")
    await _refused_with(h, daemon, "grab", "already managed by Rollout shop/web")
    for _ in range(restarts):
        await h.stop(daemon)
        # Recreated, shop/web is now listed after the attacker: list order must not matter.
        await delete(h.kube, ROLLOUTS, "shop", "web")
        await h.create(ROLLOUTS, rollout())
        daemon = await h.start()
        await _refused_with(h, daemon, "grab", "already managed by Rollout shop/web")
    # Kong's tags still name the owner; its weights never moved.
    assert weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}
    owner = owner_tags_for("shop", "web")[1]
    assert all(owner in t["tags"] for t in h.kong.targets(UPSTREAM))
    assert owner in h.kong.upstreams()[0]["tags"]


async def test_with_no_owner_in_kong_the_same_rollout_wins_in_any_order(
    harness: Harness,
) -> None:
    """Two Rollouts name a fresh upstream: the first by namespace/name wins on every start,
    whichever the API lists or the daemon processes first."""
    h = harness
    await h.seed(rollout_obj=rollout("web"))
    await _thief(h, "zzz")  # listed after shop/web either way
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="applied")
    await _refused_with(h, daemon, "grab", "already managed by Rollout shop/web")
    owner = owner_tags_for("shop", "web")[1]
    assert all(owner in t["tags"] for t in h.kong.targets(UPSTREAM))


async def test_an_upstream_kongsplit_did_not_create_needs_consent(harness: Harness) -> None:
    h = harness
    await h.seed()
    h.kong.add_upstream(UPSTREAM)  # someone else's upstream, no consent tag
    h.kong.add_target(UPSTREAM, "10.1.2.3:80", weight=100, tags=["team-a"])
    daemon = await h.start(h.settings(kong={"url": h.kong.url, "exclusiveUpstreams": True}))
    await _refused_with(h, daemon, "web", "was not created by kongsplit")
    # Nothing written, nothing zeroed (even with exclusiveUpstreams).
    assert weights(h.kong) == {"10.1.2.3:80": 100}
    warned = [e for e in await h.events() if "was not created by kongsplit" in e["message"]]
    assert warned and warned[0]["type"] == "Warning"
    assert metric(daemon, "kongsplit_reconcile_errors_total", reason="upstream_not_consented") == 1


@pytest.mark.parametrize(
    "consent",
    [
        pytest.param("tag", id="tagged-managed-by-kongsplit"),
        pytest.param([{"namespace": "shop", "upstreams": ["web.*.svc"]}], id="allowlisted"),
        pytest.param([{"namespace": "*", "upstreams": ["*"]}], id="allowlisted-everything"),
    ],
)
async def test_consent_by_tag_or_allowlist(harness: Harness, consent: object) -> None:
    h = harness
    await h.seed()
    h.kong.add_upstream(UPSTREAM, tags=["managed-by-kongsplit"] if consent == "tag" else [])
    settings = h.settings()
    if consent != "tag":
        settings = h.settings(kong={"url": h.kong.url, "allowUpstreams": consent})
    await h.start(settings)
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="driven")


async def test_an_allowlist_for_another_namespace_is_no_consent(harness: Harness) -> None:
    h = harness
    await h.seed()
    h.kong.add_upstream(UPSTREAM)
    allow = [{"namespace": "payments", "upstreams": ["*"]}]
    daemon = await h.start(h.settings(kong={"url": h.kong.url, "allowUpstreams": allow}))
    await _refused_with(h, daemon, "web", "kong.allowUpstreams naming it for namespace shop")
    assert weights(h.kong) == {}


@pytest.mark.parametrize("workspace", ["..", "."])
async def test_a_dot_segment_workspace_cannot_take_an_upstream(
    harness: Harness, workspace: str
) -> None:
    """kongsplit.io/workspace ".." once passed the annotation check: the claim and the writes
    went to /../upstreams/..., which the URL's dot-segment removal makes the default
    workspace's /upstreams/..., while ownership compared Rollouts of "workspace .." only. Now
    the value is refused as Kong's workspace rules (and URL paths) would refuse it."""
    h = harness
    await h.seed()
    daemon = await h.start()
    await eventually(lambda: weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}, what="owner")
    await h.create(SERVICES, objects.service("grab-stable", "10.96.9.10", "v1", "aaa"))
    await h.create(SERVICES, objects.service("grab-canary", "10.96.9.11", "v1", "aaa"))
    await h.create(REPLICASETS, objects.replicaset("grab", "v1", 4, 4, "aaa"))
    annotations = {"kongsplit.io/upstream": UPSTREAM, "kongsplit.io/workspace": workspace}
    await h.create(ROLLOUTS, objects.rollout("grab", "aaa", annotations=annotations))
    rec = daemon.reconciler
    assert rec is not None
    # Witness: the daemon judged the thief (invalid, counted), then Kong is checked.
    await eventually(
        lambda: any(
            k.name == "grab" and s.condition in ("invalid", "managed", "refused")
            for k, s in rec.states.items()
        ),
        what="the Rollout judged",
    )
    await rec.queue.join()
    state = next(s for k, s in rec.states.items() if k.name == "grab")
    assert state.condition == "invalid", state
    assert "kongsplit.io/workspace" in (state.last_error or "")
    assert metric(daemon, "kongsplit_reconcile_errors_total", reason="invalid_annotation") >= 1
    assert weights(h.kong) == {STABLE_T: 100, CANARY_T: 0}
