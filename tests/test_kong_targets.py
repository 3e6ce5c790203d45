"""Kong's target normalisation and kongsplit's ownership tags (pure)."""

from __future__ import annotations

import pytest

from kongsplit.kong.targets import (
    MANAGED_TAG,
    normalize_target,
    owner_label,
    owner_tags_for,
    rollout_of,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("konghq.test", "konghq.test:8000", id="host-default-port"),
        pytest.param("KongHQ.Test:80", "KongHQ.Test:80", id="host-case-kept"),
        pytest.param("10.20.30.40", "10.20.30.40:8000", id="ipv4-default-port"),
        pytest.param("010.001.0.1:8080", "10.1.0.1:8080", id="ipv4-leading-zeros"),
        pytest.param(
            "[::1]:80", "[0000:0000:0000:0000:0000:0000:0000:0001]:80", id="ipv6-expanded"
        ),
        pytest.param(
            "::1", "[0000:0000:0000:0000:0000:0000:0000:0001]:8000", id="ipv6-bare-no-port"
        ),
        pytest.param(
            "[FD00:AB::1]", "[fd00:00ab:0000:0000:0000:0000:0000:0001]:8000", id="ipv6-lower"
        ),
        pytest.param("svc.ns.svc.cluster.local:80", "svc.ns.svc.cluster.local:80", id="fqdn"),
        pytest.param(" a_b.example:0 ", "a_b.example:0", id="underscore-port-0"),
    ],
)
def test_normalize_target(given: str, expected: str) -> None:
    assert normalize_target(given) == expected
    assert normalize_target(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("", id="empty"),
        pytest.param("host:65536", id="port-too-big"),
        pytest.param("host:http", id="port-not-number"),
        pytest.param("1.2.3.256:80", id="ipv4-octet"),
        pytest.param("[::1", id="unbalanced"),
        pytest.param("[zz::1]:80", id="bad-ipv6"),
        pytest.param("bad-.example", id="label-ends-dash"),
        pytest.param("a..b", id="empty-label"),
        pytest.param("sp ace:80", id="space"),
        pytest.param("host:", id="empty-port"),
    ],
)
def test_normalize_target_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid target"):
        normalize_target(bad)


def test_owner_tags_and_labels() -> None:
    tags = owner_tags_for("shop", "check.out")
    assert tags == (MANAGED_TAG, "kongsplit-rollout:shop.check.out")
    assert rollout_of(tags) == ("shop", "check.out")
    assert owner_label(tags) == "kongsplit:shop/check.out"
    assert owner_label([MANAGED_TAG]) == "kongsplit"
    assert owner_label(None) == "foreign"
    assert owner_label(["managed-by-ingress-controller"]) == "foreign"
