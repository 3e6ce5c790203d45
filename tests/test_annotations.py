"""kongsplit.annotations: the kongsplit.io/* annotations → TargetMapping or an error."""

from __future__ import annotations

import tracemalloc

import pytest

from kongsplit.annotations import (
    ANN_PORT,
    ANN_TARGET_MODE,
    ANN_UPSTREAM,
    ANN_WORKSPACE,
    MAX_VALUE_BYTES,
    MODE_CLUSTERIP,
    MODE_DNS,
    TargetMapping,
    _parse_memo,
    parse_annotations,
)
from kongsplit.kong.names import upstream_name_problem, workspace_name_problem
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


# --------------------------------------------------------------------------- Kong's name rules
# The upstream and the workspace become Admin API path segments. Each is checked as Kong 3.9.3
# checks it (kongsplit/kong/names.py): upstreams by validate_name in
# kong/db/schema/entities/upstreams.lua over normalize_ip in kong/tools/ip.lua (hostname_type,
# normalize_ipv4, normalize_ipv6, check_hostname with penlight's stringx.split); workspaces by
# validate_utf8_name in kong/db/schema/typedefs.lua with not_one_of CORE_ENTITIES
# (kong/db/schema/entities/workspaces.lua, kong/constants.lua).


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        pytest.param("checkout.shop.svc", None, id="dotted-name"),
        pytest.param("checkout.shop.svc.", None, id="trailing-dot-fqdn"),  # check_hostname
        pytest.param("-checkout", None, id="leading-dash"),  # only a trailing one is refused
        pytest.param("a" * 70 + ".svc", None, id="label-over-63"),  # Kong has no label limit
        pytest.param("under_score", None, id="underscore"),
        pytest.param("checkout-", "must be a valid hostname", id="trailing-dash"),
        pytest.param("a-.b", "must be a valid hostname", id="label-trailing-dash"),
        pytest.param("a..b", "must be a valid hostname", id="empty-label"),
        pytest.param(".a", "must be a valid hostname", id="leading-dot"),
        pytest.param(".", "must be a valid hostname", id="dot"),  # hostname_type: ipv4
        pytest.param("..", "must be a valid hostname", id="dot-dot"),
        pytest.param("123", "must be a valid hostname", id="all-digits"),  # ipv4, invalid
        pytest.param("1.2.3", "must be a valid hostname", id="short-ipv4"),
        pytest.param("10.0.0.1", "no ip addresses allowed", id="ipv4"),
        pytest.param("::1", "no ip addresses allowed", id="ipv6"),
        pytest.param("[::1]:80", "no ip addresses allowed", id="ipv6-port"),
        pytest.param("fe80::1::2", "must be a valid hostname", id="bad-ipv6"),
        pytest.param("up:80", "no port allowed", id="port"),
        pytest.param("up:99999", "must be a valid hostname", id="port-too-big"),
        pytest.param("a/b", "must be a valid hostname", id="slash"),
        pytest.param("a%2Fb", "must be a valid hostname", id="percent"),
        pytest.param("up\n", "must be a valid hostname", id="newline"),
        pytest.param("ünï", "must be a valid hostname", id="non-ascii"),
        pytest.param("", "must be a valid hostname", id="empty"),
        pytest.param("a" * 254, "longer than 253 bytes", id="too-long"),
    ],
)
def test_upstream_names_follow_kong(name: str, problem: str | None) -> None:
    assert upstream_name_problem(name) == problem


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        pytest.param("team-a", None, id="plain"),
        pytest.param("Team_A.v2~x", None, id="every-ascii-kind"),
        pytest.param("équipe", None, id="utf8"),  # \128-\244 bytes are allowed
        pytest.param("default", None, id="default"),
        pytest.param("..", "'.' and '..' cannot be a path segment of a URL", id="dot-dot"),
        pytest.param(".", "'.' and '..' cannot be a path segment of a URL", id="dot"),
        pytest.param("a/b", "the only accepted ASCII", id="slash"),
        pytest.param("a%2e", "the only accepted ASCII", id="percent"),
        pytest.param("a b", "the only accepted ASCII", id="space"),
        pytest.param("a?b", "the only accepted ASCII", id="query"),
        pytest.param("upstreams", "the name of a Kong entity collection", id="core-entity"),
        pytest.param("ca_certificates", "the name of a Kong entity collection", id="core-2"),
        pytest.param("\ud800", "not valid UTF-8", id="lone-surrogate"),
        pytest.param("w" * 254, "longer than 253 bytes", id="too-long"),
    ],
)
def test_workspace_names_follow_kong(name: str, problem: str | None) -> None:
    got = workspace_name_problem(name)
    assert (got is None) == (problem is None), got
    if problem is not None:
        assert got is not None and problem in got


@pytest.mark.parametrize(
    "workspace",
    [
        pytest.param("..", id="dot-dot"),
        pytest.param(".", id="dot"),
        pytest.param(" .. ", id="dot-dot-spaced"),
        pytest.param("a/..", id="traversal"),
        pytest.param("upstreams", id="core-entity"),
    ],
)
def test_a_workspace_that_is_no_path_segment_is_refused(workspace: str) -> None:
    """Before: "." and ".." passed ([A-Za-z0-9._~-]{1,128}), and the client's
    /{workspace}/upstreams/... became the default workspace's /upstreams/... once the URL's dot
    segments were removed: a Rollout in another "workspace" escaped the ownership check."""
    got = parse_annotations({ANN_UPSTREAM: "u", ANN_WORKSPACE: workspace}, key=KEY)
    assert isinstance(got, ObjectError), got
    assert got.field == f"metadata.annotations[{ANN_WORKSPACE}]"
    assert got.reason == "invalid_annotation"
    assert "not a valid Kong workspace name" in got.message


def test_the_configured_default_workspace_is_checked_too() -> None:
    got = parse_annotations({ANN_UPSTREAM: "u"}, key=KEY, default_workspace="..")
    assert isinstance(got, ObjectError) and "workspace" in got.message


@pytest.mark.parametrize(
    "annotation",
    [ANN_UPSTREAM, ANN_WORKSPACE, ANN_PORT, ANN_TARGET_MODE, "kongsplit.io/unknown"],
)
def test_an_oversized_value_is_refused_naming_rollout_and_annotation(annotation: str) -> None:
    huge = "x" * (1 << 20)  # 1 MiB
    annotations = {ANN_UPSTREAM: "u", annotation: huge}
    got = parse_annotations(annotations, key=KEY)
    assert isinstance(got, ObjectError), got
    text = str(got)
    assert text.startswith(f"Rollout shop/checkout: metadata.annotations[{annotation}]: ")
    assert f"value too long: {1 << 20} bytes, at most {MAX_VALUE_BYTES}" in text
    assert len(text) < 300  # the value is quoted cut short, never whole


def test_a_value_at_the_limit_is_read() -> None:
    name = ".".join(["a" * 63] * 4)[:253]
    assert len(name) == 253
    got = parse_annotations({ANN_UPSTREAM: f" {name} "}, key=KEY)
    assert isinstance(got, TargetMapping) and got.upstream == name


def test_error_messages_quote_values_cut_short() -> None:
    bad = "y" * 200 + "/"
    got = parse_annotations({ANN_UPSTREAM: bad}, key=KEY)
    assert isinstance(got, ObjectError)
    assert "... (201 bytes)" in got.message and bad not in got.message


def test_the_memo_is_bounded_in_bytes_not_entries() -> None:
    """750 edits of a 250 KiB annotation set took the daemon from 81 to 266 MiB: the memo kept
    every one (8,192 entries of any size). Large sets are parsed, not memoised. Here: 200 edits
    of 250 KiB of annotations, each value under the per-value limit (many unknown ones)."""
    _parse_memo.cache_clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for edit in range(200):
            annotations = {ANN_UPSTREAM: "u"}
            annotations |= {f"kongsplit.io/x{i}": f"{edit:05d}" + "v" * 240 for i in range(1000)}
            got = parse_annotations(annotations, key=KEY)
            assert isinstance(got, ObjectError) and "unknown annotation" in got.message
            del annotations
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 2 * 1024 * 1024, f"{retained} bytes retained after 200 edits"
    # Small sets are still memoised: the daemon's hot path asks the same question again.
    parse_annotations({ANN_UPSTREAM: "memo.me"}, key=KEY)
    hits = _parse_memo.cache_info().hits
    parse_annotations({ANN_UPSTREAM: "memo.me"}, key=KEY)
    assert _parse_memo.cache_info().hits == hits + 1
