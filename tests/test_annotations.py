"""kongsplit.annotations: the kongsplit.io/* annotations → TargetMapping or an error."""

from __future__ import annotations

import pytest

from kongsplit.annotations import (
    ANN_PORT,
    ANN_TARGET_MODE,
    ANN_UPSTREAM,
    ANN_WORKSPACE,
    MODE_CLUSTERIP,
    MODE_DNS,
    TargetMapping,
    parse_annotations,
)
from kongsplit.rollouts import ObjectError, RolloutKey

KEY = RolloutKey("shop", "checkout")


# --------------------------------------------------------------------------- annotations


@pytest.mark.parametrize(
    ("annotations", "default_workspace", "expected"),
    [
        pytest.param(
            {ANN_UPSTREAM: "checkout.shop.svc"},
            None,
            TargetMapping("checkout.shop.svc", None, MODE_CLUSTERIP, None),
            id="upstream-only-defaults",
        ),
        pytest.param(
            {ANN_UPSTREAM: " checkout "},
            None,
            TargetMapping("checkout", None, MODE_CLUSTERIP, None),
            id="upstream-whitespace-trimmed",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", ANN_PORT: "http"},
            None,
            TargetMapping("u", "http", MODE_CLUSTERIP, None),
            id="port-by-name",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", ANN_PORT: "8080"},
            None,
            TargetMapping("u", 8080, MODE_CLUSTERIP, None),
            id="port-by-number",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", ANN_TARGET_MODE: "dns"},
            None,
            TargetMapping("u", None, MODE_DNS, None),
            id="mode-dns",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", ANN_TARGET_MODE: " ClusterIP "},
            None,
            TargetMapping("u", None, MODE_CLUSTERIP, None),
            id="mode-case-insensitive",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", ANN_WORKSPACE: "team-a"},
            "default-ws",
            TargetMapping("u", None, MODE_CLUSTERIP, "team-a"),
            id="workspace-annotation-beats-default",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u"},
            "default-ws",
            TargetMapping("u", None, MODE_CLUSTERIP, "default-ws"),
            id="workspace-from-config-default",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", ANN_WORKSPACE: ""},
            "default-ws",
            TargetMapping("u", None, MODE_CLUSTERIP, "default-ws"),
            id="empty-workspace-annotation-means-default",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", "example.com/other": "x"},
            None,
            TargetMapping("u", None, MODE_CLUSTERIP, None),
            id="foreign-annotations-ignored",
        ),
    ],
)
def test_parse_annotations_valid(
    annotations: dict[str, str], default_workspace: str | None, expected: TargetMapping
) -> None:
    got = parse_annotations(annotations, key=KEY, default_workspace=default_workspace)
    assert got == expected


@pytest.mark.parametrize(
    "annotations",
    [
        pytest.param({}, id="none"),
        pytest.param({"example.com/upstream": "u"}, id="only-foreign"),
    ],
)
def test_parse_annotations_not_opted_in(annotations: dict[str, str]) -> None:
    assert parse_annotations(annotations, key=KEY) is None


@pytest.mark.parametrize(
    ("annotations", "annotation", "words"),
    [
        pytest.param({ANN_UPSTREAM: ""}, ANN_UPSTREAM, "upstream name", id="upstream-empty"),
        pytest.param({ANN_UPSTREAM: "10.0.0.1"}, ANN_UPSTREAM, "no IP", id="upstream-ip"),
        pytest.param({ANN_UPSTREAM: "up:80"}, ANN_UPSTREAM, "no port", id="upstream-port"),
        pytest.param({ANN_UPSTREAM: "up stream"}, ANN_UPSTREAM, "'up stream'", id="upstream-space"),
        pytest.param({ANN_PORT: "http"}, ANN_UPSTREAM, ANN_PORT, id="port-without-upstream"),
        pytest.param(
            {"kongsplit.io/weight": "5"},
            ANN_UPSTREAM,
            "kongsplit.io/weight",
            id="unknown-without-upstream",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", "kongsplit.io/uptsream": "v"},
            "kongsplit.io/uptsream",
            "unknown annotation",
            id="unknown-typo",
        ),
        pytest.param({ANN_UPSTREAM: "u", ANN_PORT: "0"}, ANN_PORT, "1..65535", id="port-zero"),
        pytest.param({ANN_UPSTREAM: "u", ANN_PORT: "70000"}, ANN_PORT, "1..65535", id="port-big"),
        pytest.param({ANN_UPSTREAM: "u", ANN_PORT: "HTTP"}, ANN_PORT, "'HTTP'", id="port-upper"),
        pytest.param({ANN_UPSTREAM: "u", ANN_PORT: "-80"}, ANN_PORT, "'-80'", id="port-negative"),
        pytest.param({ANN_UPSTREAM: "u", ANN_PORT: "²"}, ANN_PORT, "'²'", id="port-superscript"),
        pytest.param({ANN_UPSTREAM: "u", ANN_PORT: ""}, ANN_PORT, "''", id="port-empty"),
        pytest.param(
            {ANN_UPSTREAM: "u", ANN_TARGET_MODE: "nodeport"},
            ANN_TARGET_MODE,
            "'clusterip' or 'dns'",
            id="mode-unknown",
        ),
        pytest.param(
            {ANN_UPSTREAM: "u", ANN_WORKSPACE: "a b"},
            ANN_WORKSPACE,
            "'a b'",
            id="workspace-bad",
        ),
    ],
)
def test_parse_annotations_invalid(
    annotations: dict[str, str], annotation: str, words: str
) -> None:
    got = parse_annotations(annotations, key=KEY)
    assert isinstance(got, ObjectError), got
    assert (got.kind, got.namespace, got.name) == ("Rollout", "shop", "checkout")
    assert got.field == f"metadata.annotations[{annotation}]"
    assert words in got.message
    assert str(got).startswith(f"Rollout shop/checkout: metadata.annotations[{annotation}]: ")
