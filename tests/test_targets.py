"""kongsplit.targets: annotations → TargetMapping, Service parsing, and Split → Kong targets."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kongsplit.rollouts import ObjectError, RolloutKey
from kongsplit.targets import (
    ANN_PORT,
    ANN_TARGET_MODE,
    ANN_UPSTREAM,
    ANN_WORKSPACE,
    MODE_CLUSTERIP,
    MODE_DNS,
    ROLE_CANARY,
    ROLE_EXPERIMENT,
    ROLE_STABLE,
    DesiredTarget,
    Service,
    ServicePort,
    TargetMapping,
    parse_annotations,
    parse_service,
    plan_targets,
)
from kongsplit.weights import Destination, Split

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


# --------------------------------------------------------------------------- Service parsing


def service_json(name: str = "checkout-stable", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"clusterIP": "10.96.14.20", "ports": [{"name": "http", "port": 80}]}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": body,
    }


def test_parse_service_reads_what_the_mapping_needs() -> None:
    obj = service_json(
        ports=[
            {"name": "http", "port": 80, "targetPort": 8080},
            {"port": 9090, "targetPort": "metrics"},
        ],
        selector={"app": "checkout", "rollouts-pod-template-hash": "5f6c"},
    )
    assert parse_service(obj) == Service(
        namespace="shop",
        name="checkout-stable",
        type="ClusterIP",
        cluster_ip="10.96.14.20",
        ports=(ServicePort("http", 80), ServicePort(None, 9090)),
        selector_hash="5f6c",
    )


def test_parse_service_defaults_namespace() -> None:
    obj = service_json()
    del obj["metadata"]["namespace"]
    got = parse_service(obj)
    assert isinstance(got, Service)
    assert got.namespace == "default"


@pytest.mark.parametrize(
    ("cluster_ip", "headless"),
    [
        pytest.param("None", True, id="explicit-None-is-headless"),
        pytest.param(None, False, id="absent-is-unallocated-not-headless"),
        pytest.param("10.0.0.1", False, id="ip"),
    ],
)
def test_service_headless(cluster_ip: str | None, headless: bool) -> None:
    obj = service_json(clusterIP=cluster_ip)
    got = parse_service(obj)
    assert isinstance(got, Service)
    assert got.headless is headless


@pytest.mark.parametrize(
    ("obj", "field", "words"),
    [
        pytest.param(["not", "a", "map"], None, "expected an object, got list", id="not-object"),
        pytest.param({"spec": {}}, "metadata.name", "required", id="no-metadata"),
        pytest.param({"metadata": {"name": "s"}}, "spec", "required", id="no-spec"),
        pytest.param(service_json(ports={"http": 80}), "spec.ports", "list", id="ports-map"),
        pytest.param(service_json(ports=["http"]), "spec.ports[0]", "object", id="port-not-map"),
        pytest.param(
            service_json(ports=[{"port": "80"}]), "spec.ports[0].port", "'80'", id="port-string"
        ),
        pytest.param(
            service_json(ports=[{"port": 0}]), "spec.ports[0].port", "1 and 65535", id="port-0"
        ),
        pytest.param(
            service_json(ports=[{"port": 80}, {"port": True}]),
            "spec.ports[1].port",
            "True",
            id="port-bool",
        ),
    ],
)
def test_parse_service_invalid(obj: object, field: str | None, words: str) -> None:
    got = parse_service(obj)
    assert isinstance(got, ObjectError), got
    assert got.kind == "Service"
    assert got.field == field
    assert words in got.message


# --------------------------------------------------------------------------- plan_targets


def svc(
    name: str,
    ip: str | None = "10.96.14.20",
    *ports: tuple[str | None, int],
    type: str = "ClusterIP",
) -> Service:
    return Service(
        namespace="shop",
        name=name,
        type=type,
        cluster_ip=ip,
        ports=tuple(ServicePort(n, p) for n, p in (ports or [("http", 80)])),
        selector_hash=None,
    )


def split(canary: int = 25, *additional: Destination, stable: int | None = None) -> Split:
    rest = 100 - canary - sum(d.weight for d in additional)
    return Split(
        canary=canary,
        stable=rest if stable is None else stable,
        max=100,
        additional=tuple(additional),
        canary_service="checkout-canary",
        stable_service="checkout-stable",
        rule="step",
    )


def mapping(port: str | int | None = None, mode: str = MODE_CLUSTERIP) -> TargetMapping:
    return TargetMapping("checkout.shop.svc", port, mode, None)


def services(*items: Service) -> dict[str, Service]:
    return {s.name: s for s in items}


TWO_PORTS = (("http", 80), ("metrics", 9090))


@pytest.mark.parametrize(
    ("the_split", "the_mapping", "the_services", "domain", "expected"),
    [
        pytest.param(
            split(25),
            mapping(),
            services(svc("checkout-stable", "10.96.14.20"), svc("checkout-canary", "10.96.14.21")),
            "cluster.local",
            [("10.96.14.20:80", 75, ROLE_STABLE), ("10.96.14.21:80", 25, ROLE_CANARY)],
            id="clusterip-single-port",
        ),
        pytest.param(
            split(10),
            mapping("metrics"),
            services(
                svc("checkout-stable", "10.0.0.1", *TWO_PORTS),
                svc("checkout-canary", "10.0.0.2", *TWO_PORTS),
            ),
            "cluster.local",
            [("10.0.0.1:9090", 90, ROLE_STABLE), ("10.0.0.2:9090", 10, ROLE_CANARY)],
            id="clusterip-port-by-name",
        ),
        pytest.param(
            split(10),
            mapping(80),
            services(
                svc("checkout-stable", "10.0.0.1", *TWO_PORTS),
                svc("checkout-canary", "10.0.0.2", *TWO_PORTS),
            ),
            "cluster.local",
            [("10.0.0.1:80", 90, ROLE_STABLE), ("10.0.0.2:80", 10, ROLE_CANARY)],
            id="clusterip-port-by-number",
        ),
        pytest.param(
            split(0),
            mapping(),
            services(svc("checkout-stable", "10.0.0.1"), svc("checkout-canary", "10.0.0.2")),
            "cluster.local",
            [("10.0.0.1:80", 100, ROLE_STABLE), ("10.0.0.2:80", 0, ROLE_CANARY)],
            id="canary-at-zero-still-held",
        ),
        pytest.param(
            split(100),
            mapping(),
            services(svc("checkout-stable", "10.0.0.1"), svc("checkout-canary", "10.0.0.2")),
            "cluster.local",
            [("10.0.0.1:80", 0, ROLE_STABLE), ("10.0.0.2:80", 100, ROLE_CANARY)],
            id="stable-at-zero-still-held",
        ),
        pytest.param(
            split(25),
            mapping(mode=MODE_DNS),
            services(svc("checkout-stable", "10.0.0.1"), svc("checkout-canary", "10.0.0.2")),
            "cluster.local",
            [
                ("checkout-stable.shop.svc.cluster.local:80", 75, ROLE_STABLE),
                ("checkout-canary.shop.svc.cluster.local:80", 25, ROLE_CANARY),
            ],
            id="dns-mode",
        ),
        pytest.param(
            split(25),
            mapping("http", mode=MODE_DNS),
            services(
                svc("checkout-stable", "10.0.0.1", ("http", 8443)),
                svc("checkout-canary", None, ("http", 8443)),
            ),
            "corp.example",
            [
                ("checkout-stable.shop.svc.corp.example:8443", 75, ROLE_STABLE),
                ("checkout-canary.shop.svc.corp.example:8443", 25, ROLE_CANARY),
            ],
            id="dns-mode-cluster-domain-unallocated-ip-ok",
        ),
        pytest.param(
            split(25),
            mapping(8080),
            None,
            "cluster.local",
            [
                ("checkout-stable.shop.svc.cluster.local:8080", 75, ROLE_STABLE),
                ("checkout-canary.shop.svc.cluster.local:8080", 25, ROLE_CANARY),
            ],
            id="services-unknown-fall-back-to-dns",
        ),
        pytest.param(
            split(20, Destination("exp-a", 10), Destination("exp-b", 5)),
            mapping(),
            services(
                svc("checkout-stable", "10.0.0.1"),
                svc("checkout-canary", "10.0.0.2"),
                svc("exp-a", "10.0.0.3"),
                svc("exp-b", "10.0.0.4"),
            ),
            "cluster.local",
            [
                ("10.0.0.1:80", 65, ROLE_STABLE),
                ("10.0.0.2:80", 20, ROLE_CANARY),
                ("10.0.0.3:80", 10, ROLE_EXPERIMENT),
                ("10.0.0.4:80", 5, ROLE_EXPERIMENT),
            ],
            id="experiment-destinations",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(svc("checkout-stable", "fd00::14:20"), svc("checkout-canary", "FD00::14:21")),
            "cluster.local",
            [
                ("[fd00:0000:0000:0000:0000:0000:0014:0020]:80", 75, ROLE_STABLE),
                ("[fd00:0000:0000:0000:0000:0000:0014:0021]:80", 25, ROLE_CANARY),
            ],
            id="ipv6-expanded-bracketed-lowercase",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(svc("checkout-stable", "010.096.014.020"), svc("checkout-canary", "10.0.0.2")),
            "cluster.local",
            [("10.96.14.20:80", 75, ROLE_STABLE), ("10.0.0.2:80", 25, ROLE_CANARY)],
            id="ipv4-leading-zeros-dropped",
        ),
    ],
)
def test_plan_targets(
    the_split: Split,
    the_mapping: TargetMapping,
    the_services: dict[str, Service] | None,
    domain: str,
    expected: list[tuple[str, int, str]],
) -> None:
    plan = plan_targets(
        the_split, the_mapping, key=KEY, services=the_services, cluster_domain=domain
    )
    assert not isinstance(plan, ObjectError), plan
    assert [(t.target, t.weight, t.role) for t in plan.targets] == expected
    assert plan.upstream == "checkout.shop.svc"
    assert plan.weights() == {t: w for t, w, _ in expected}


def test_plan_targets_keeps_service_names_and_workspace() -> None:
    plan = plan_targets(
        split(25),
        TargetMapping("u", None, MODE_CLUSTERIP, "team-a"),
        key=KEY,
        services=services(svc("checkout-stable", "10.0.0.1"), svc("checkout-canary", "10.0.0.2")),
    )
    assert not isinstance(plan, ObjectError)
    assert plan.workspace == "team-a"
    assert plan.targets == (
        DesiredTarget("10.0.0.1:80", 75, ROLE_STABLE, "checkout-stable"),
        DesiredTarget("10.0.0.2:80", 25, ROLE_CANARY, "checkout-canary"),
    )


GOOD_STABLE = svc("checkout-stable", "10.0.0.1")


@pytest.mark.parametrize(
    ("the_split", "the_mapping", "the_services", "kind", "name", "field", "words"),
    [
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "None")),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "headless",
            id="headless-clusterip-mode",
        ),
        pytest.param(
            split(25),
            mapping(mode=MODE_DNS),
            services(GOOD_STABLE, svc("checkout-canary", "None")),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "headless",
            id="headless-dns-mode",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", None, type="ExternalName")),
            "Service",
            "checkout-canary",
            "spec.type",
            "ExternalName",
            id="external-name",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", None)),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "not set",
            id="clusterip-unallocated",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "canary.example")),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "not an IP address",
            id="clusterip-hostname",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "10.0.0.300")),
            "Service",
            "checkout-canary",
            "spec.clusterIP",
            "not a valid Kong target",
            id="clusterip-octet-out-of-range",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(svc("checkout-stable", "10.0.0.1", *TWO_PORTS), svc("checkout-canary")),
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "several ports (http, metrics)",
            id="several-ports-need-annotation",
        ),
        pytest.param(
            split(25),
            mapping("grpc"),
            services(
                svc("checkout-stable", "10.0.0.1", *TWO_PORTS),
                svc("checkout-canary", "10.0.0.2", *TWO_PORTS),
            ),
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "no port named 'grpc' (ports: http, metrics)",
            id="missing-port-name",
        ),
        pytest.param(
            split(25),
            mapping(8080),
            services(GOOD_STABLE, svc("checkout-canary", "10.0.0.2")),
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "no port with number 8080",
            id="target-port-is-not-the-port",
        ),
        pytest.param(
            split(25),
            mapping("http"),
            None,
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "must be a number",
            id="unknown-services-need-numeric-port",
        ),
        pytest.param(
            split(25),
            mapping(),
            None,
            "Rollout",
            "checkout",
            f"metadata.annotations[{ANN_PORT}]",
            "must be a number",
            id="unknown-services-need-a-port",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(
                GOOD_STABLE, Service("shop", "checkout-canary", "ClusterIP", "10.0.0.2", (), None)
            ),
            "Service",
            "checkout-canary",
            "spec.ports",
            "no ports",
            id="service-without-ports",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "10.0.0.1")),
            "Rollout",
            "checkout",
            "spec.strategy.canary",
            "checkout-stable and checkout-canary resolve to the same Kong target 10.0.0.1:80",
            id="same-target",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "010.0.0.1")),
            "Rollout",
            "checkout",
            "spec.strategy.canary",
            "same Kong target 10.0.0.1:80",
            id="same-target-after-normalisation",
        ),
        pytest.param(
            split(25, Destination("exp", 5)),
            mapping(),
            services(GOOD_STABLE, svc("checkout-canary", "10.0.0.2"), svc("exp", "10.0.0.2")),
            "Rollout",
            "checkout",
            "spec.strategy.canary",
            "checkout-canary and exp",
            id="experiment-same-target-as-canary",
        ),
        pytest.param(
            split(25),
            mapping(),
            services(GOOD_STABLE),
            "Rollout",
            "checkout",
            "spec.strategy.canary",
            "Service shop/checkout-canary not found",
            id="service-missing",
        ),
        pytest.param(
            Split(0, 100, 100, (), None, "s", "step"),
            mapping(),
            None,
            "Rollout",
            "checkout",
            "spec.strategy.canary.stableService",
            "required",
            id="no-canary-service",
        ),
    ],
)
def test_plan_targets_refused(
    the_split: Split,
    the_mapping: TargetMapping,
    the_services: dict[str, Service] | None,
    kind: str,
    name: str,
    field: str,
    words: str,
) -> None:
    got = plan_targets(the_split, the_mapping, key=KEY, services=the_services)
    assert isinstance(got, ObjectError), got
    assert (got.kind, got.namespace, got.name, got.field) == (kind, "shop", name, field)
    assert words in got.message


@pytest.mark.parametrize("unallocated", [None, ""])
def test_placeholder_for_a_cluster_ip_not_allocated_yet(unallocated: str | None) -> None:
    # Offline plan of manifests not applied yet: the weights, and a placeholder for the address.
    plan = plan_targets(
        split(25),
        mapping(),
        key=KEY,
        services=services(GOOD_STABLE, svc("checkout-canary", unallocated)),
        placeholders=True,
    )
    assert not isinstance(plan, ObjectError), plan
    assert plan.targets == (
        DesiredTarget("10.0.0.1:80", 75, ROLE_STABLE, "checkout-stable"),
        DesiredTarget(
            "<clusterIP of shop/checkout-canary>:80",
            25,
            ROLE_CANARY,
            "checkout-canary",
            address_pending=True,
        ),
    )


@pytest.mark.parametrize(
    ("canary", "field", "words"),
    [
        pytest.param(svc("checkout-canary", "None"), "spec.clusterIP", "headless", id="headless"),
        pytest.param(
            svc("checkout-canary", None, type="ExternalName"),
            "spec.type",
            "ExternalName",
            id="external-name",
        ),
        pytest.param(
            svc("checkout-canary", "canary.example"),
            "spec.clusterIP",
            "not an IP address",
            id="clusterip-hostname",
        ),
    ],
)
def test_placeholders_cover_only_an_absent_cluster_ip(
    canary: Service, field: str, words: str
) -> None:
    got = plan_targets(
        split(25), mapping(), key=KEY, services=services(GOOD_STABLE, canary), placeholders=True
    )
    assert isinstance(got, ObjectError), got
    assert (got.kind, got.name, got.field) == ("Service", "checkout-canary", field)
    assert words in got.message


def test_dns_mode_needs_no_placeholder() -> None:
    got = plan_targets(
        split(25),
        mapping(mode=MODE_DNS),
        key=KEY,
        services=services(GOOD_STABLE, svc("checkout-canary", None)),
        placeholders=True,
    )
    assert not isinstance(got, ObjectError), got
    assert [(t.target, t.address_pending) for t in got.targets] == [
        ("checkout-stable.shop.svc.cluster.local:80", False),
        ("checkout-canary.shop.svc.cluster.local:80", False),
    ]


@given(address=st.ip_addresses(v=6), port=st.integers(1, 65535))
def test_ipv6_cluster_ip_is_normalised_the_kong_way(
    address: ipaddress.IPv6Address, port: int
) -> None:
    canary_ip = str(address)
    stable_ip = "10.0.0.1"
    plan = plan_targets(
        split(25),
        mapping(port),
        key=KEY,
        services=services(
            svc("checkout-stable", stable_ip, ("http", port)),
            svc("checkout-canary", canary_ip, ("http", port)),
        ),
    )
    assert not isinstance(plan, ObjectError), plan
    canary = plan.targets[1].target
    # Kong's form: bracketed, fully expanded, zero-padded, lower-case (docs/kong.md "Target
    # strings").
    assert canary == f"[{address.exploded}]:{port}"
    assert canary == canary.lower()
    assert len(canary.split("]")[0]) == 1 + 39
