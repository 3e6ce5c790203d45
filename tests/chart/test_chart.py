"""The Helm chart with the real helm and kubernetes-validate: lint, render, validate, inspect.

Chart "unit tests" are plain pytest: `helm template` with a values file, load the YAML, assert on
the objects. Built-in kinds are validated against the schemas of every Kubernetes minor version from
the chart's `kubeVersion` floor (1.25) to the newest kubernetes-validate ships (1.37); the custom
resources (ServiceMonitor, PrometheusRule, AnalysisTemplate) are checked structurally here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, CI_VALUES, ROOT, by_kind, load_docs, one, run

from kongsplit.config import load_settings

pytestmark = pytest.mark.tools

CI_IDS = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
CI = dict(zip(CI_IDS, CI_VALUES, strict=True))
BUILTIN_API_GROUPS = {
    "v1",
    "apps/v1",
    "policy/v1",
    "rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1",
}

# The RBAC the chart README documents, exactly: (apiGroup, resource) -> verbs.
WATCH_RULES = {
    ("argoproj.io", "rollouts"): {"get", "list", "watch"},
    ("apps", "replicasets"): {"get", "list", "watch"},
    ("", "services"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE_VERBS = {"get", "create", "update"}


def rules_by_resource(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["kongsplit"]
    return pod["containers"][0]


def service_link_env(service: dict[str, Any], ip: str = "10.96.0.42") -> dict[str, str]:
    """The variables Kubernetes puts into every pod of the namespace for ``service`` when
    ``enableServiceLinks`` is on (the default), named as the kubelet names them."""
    name = service["metadata"]["name"].upper().replace("-", "_")
    ports = service["spec"]["ports"]
    first = ports[0]
    env = {
        f"{name}_SERVICE_HOST": ip,
        f"{name}_SERVICE_PORT": str(first["port"]),
        f"{name}_PORT": f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}",
    }
    for port in ports:
        proto = port.get("protocol", "TCP")
        if port.get("name"):
            env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        prefix = f"{name}_PORT_{port['port']}_{proto}"
        env[prefix] = f"{proto.lower()}://{ip}:{port['port']}"
        env[f"{prefix}_PROTO"] = proto.lower()
        env[f"{prefix}_PORT"] = str(port["port"])
        env[f"{prefix}_ADDR"] = ip
    return env


@pytest.fixture(scope="module")
def rendered(helm_template: Any) -> dict[str, list[dict[str, Any]]]:
    """Every ci/*-values.yaml rendered once (namespace kongsplit-system, release kongsplit)."""
    return {name: load_docs(helm_template(path)) for name, path in CI.items()}


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_helm_lint_strict(helm: str, values: Path) -> None:
    proc = run([helm, "lint", "--strict", str(CHART), "-f", str(values)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


# Every minor version whose schemas kubernetes-validate 1.37.0 bundles, from the chart's floor.
KUBE_VERSIONS = [f"1.{minor}.0" for minor in range(25, 38)]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_builtin_kinds_validate_against_kubernetes(
    helm_template: Any, kubernetes_validate: str, kube_version: str
) -> None:
    """Every ci/*-values.yaml, rendered for that version, against that version's schemas."""
    builtin = [
        d
        for path in CI_VALUES
        for d in load_docs(helm_template(path, kube_version=kube_version))
        if d["apiVersion"] in BUILTIN_API_GROUPS
    ]
    assert builtin, "nothing to validate"
    proc = run(
        [kubernetes_validate, "-k", kube_version, "--strict", "-"],
        stdin=yaml.safe_dump_all(builtin),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout + proc.stderr
    assert proc.stdout.count("INFO - passed") == len(builtin), proc.stdout


def test_kube_versions_start_at_the_charts_floor(helm_template: Any) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["kubeVersion"] == f">={KUBE_VERSIONS[0]}-0"
    error = helm_template(kube_version="1.24.0", expect_ok=False)
    assert "chart requires kubeVersion: >=1.25.0-0" in error, error


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_config_map_loads_with_kongsplit_settings(
    rendered: dict[str, list[dict[str, Any]]], values: Path, tmp_path: Path
) -> None:
    """The rendered config file is accepted by kongsplit's own loader (unknown keys are errors)."""
    docs = rendered[values.name.removesuffix("-values.yaml")]
    config_maps = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {})]
    assert len(config_maps) == 1
    path = tmp_path / "config.yaml"
    path.write_text(config_maps[0]["data"]["config.yaml"], encoding="utf-8")
    # The pod's environment: the downward API, and the service links Kubernetes adds for every
    # Service of the namespace (the chart's own is named kongsplit: KONGSPLIT_SERVICE_HOST...).
    env = {"POD_NAME": "kongsplit-0", "POD_NAMESPACE": "x"}
    for service in by_kind(docs, "Service"):
        env |= service_link_env(service)
    if by_kind(docs, "Service"):
        assert "KONGSPLIT_SERVICE_HOST" in env
    settings = load_settings(str(path), env=env)
    assert settings.server.listen == "0.0.0.0:9102"
    assert settings.kong.token is None  # never a token in clear
    values_doc = yaml.safe_load(values.read_text(encoding="utf-8")) or {}
    assert settings.kubernetes.namespaces == tuple(values_doc.get("watchNamespaces", ()))
    if values_doc.get("mode") == "sidecar":
        assert settings.kong.url == "http://localhost:8001"
        assert settings.leader_election.enabled is False
    else:
        assert settings.leader_election.enabled is True
    if values_doc.get("kong", {}).get("tokenSecret", {}).get("name"):
        assert settings.kong.token_file == "/var/run/secrets/kongsplit/token/admin-token"
        assert settings.kong.tls.ca_file == "/var/run/secrets/kongsplit/ca/ca.crt"
        assert settings.kong.tls.cert_file == "/var/run/secrets/kongsplit/client/tls.crt"
        assert settings.kong.workspace == "payments"
    else:
        assert settings.kong.token_file is None


def test_default_deployment_shape(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    assert c["args"] == ["run", "--config", "/etc/kongsplit/config.yaml"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["ports"] == [{"name": "http-metrics", "containerPort": 9102, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/kongsplit"]["readOnly"] is True
    config_volume = next(v for v in pod["volumes"] if v["name"] == "kongsplit-config")
    assert config_volume["configMap"]["name"] == "kongsplit-config"
    assert "checksum/config" in deploy["spec"]["template"]["metadata"]["annotations"]

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deploy["spec"]["selector"]
    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9102, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    for kind in ("ServiceMonitor", "PrometheusRule", "AnalysisTemplate", "ClusterAnalysisTemplate"):
        assert not by_kind(docs, kind), f"{kind} must be off by default"


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_rbac_is_exactly_design_section_5(
    rendered: dict[str, list[dict[str, Any]]], values: Path
) -> None:
    name = values.name.removesuffix("-values.yaml")
    docs = rendered[name]
    release_ns = "kongsplit-system"
    values_doc = yaml.safe_load(values.read_text(encoding="utf-8")) or {}
    watch = values_doc.get("watchNamespaces", [])
    roles = by_kind(docs, "Role")
    cluster_roles = by_kind(docs, "ClusterRole")
    all_rules = [r for role in roles + cluster_roles for r in role["rules"]]
    for rule in all_rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert "secrets" not in rule["resources"], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        ), rule

    lease_roles = [r for r in roles if any("leases" in rule["resources"] for rule in r["rules"])]
    node_roles = [r for r in roles if r["metadata"]["name"].endswith("-verify-nodes")]
    watch_roles = [r for r in roles if r not in lease_roles and r not in node_roles]
    nodes_from = values_doc.get("config", {}).get("kong", {}).get("nodesFrom", {})
    if nodes_from.get("service"):
        # kong.nodesFrom: EndpointSlices, read-only, in that one namespace.
        assert len(node_roles) == 1
        assert node_roles[0]["metadata"]["namespace"] == nodes_from.get("namespace", release_ns)
        assert rules_by_resource(node_roles[0]["rules"]) == {
            ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch"}
        }
    else:
        assert not node_roles
    if values_doc.get("mode") == "sidecar":
        assert not lease_roles, "no leader election, so no Lease access, in sidecar mode"
    else:
        assert len(lease_roles) == 1
        lease_role = lease_roles[0]
        assert lease_role["metadata"]["namespace"] == release_ns
        assert rules_by_resource(lease_role["rules"]) == {
            ("coordination.k8s.io", "leases"): LEASE_VERBS
        }
        lease_name = (
            values_doc.get("config", {}).get("leaderElection", {}).get("leaseName", "kongsplit")
        )
        for rule in lease_role["rules"]:
            if set(rule["verbs"]) != {"create"}:
                assert rule["resourceNames"] == [lease_name]
    for cluster_role in cluster_roles:
        assert ("coordination.k8s.io", "leases") not in rules_by_resource(cluster_role["rules"])

    if watch:
        assert not cluster_roles and not by_kind(docs, "ClusterRoleBinding")
        assert sorted(r["metadata"]["namespace"] for r in watch_roles) == sorted(watch)
        for role in watch_roles:
            assert rules_by_resource(role["rules"]) == WATCH_RULES
    else:
        assert not watch_roles
        assert len(cluster_roles) == 1
        assert rules_by_resource(cluster_roles[0]["rules"]) == WATCH_RULES

    sa_name = (
        one(docs, "ServiceAccount")["metadata"]["name"]
        if by_kind(docs, "ServiceAccount")
        else values_doc["serviceAccount"]["name"]
    )
    bindings = by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding")
    assert len(bindings) == len(roles) + len(cluster_roles)
    role_names = {(r["kind"], r["metadata"]["name"], r["metadata"].get("namespace")) for r in roles}
    role_names |= {(r["kind"], r["metadata"]["name"], None) for r in cluster_roles}
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa_name, "namespace": release_ns}
        ]
        ns = binding["metadata"].get("namespace") if binding["roleRef"]["kind"] == "Role" else None
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"], ns) in role_names


def test_every_rbac_rule_has_a_why_comment() -> None:
    text = (CHART / "templates" / "rbac.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[i - 1].strip().startswith("#"), f"rbac.yaml:{i + 1} has no comment"


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_token_only_from_a_secret(rendered: dict[str, list[dict[str, Any]]], values: Path) -> None:
    docs = rendered[values.name.removesuffix("-values.yaml")]
    text = yaml.safe_dump_all(docs)
    assert not re.search(r"(?i)kong-admin-token:\s", text)
    for doc in docs:
        if doc["kind"] == "Secret":
            pytest.fail("the chart must never create a Secret (the token Secret is the user's)")
    containers = [
        c for d in by_kind(docs, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]
    ]
    for doc in by_kind(docs, "ConfigMap"):
        if "values.yaml" in doc["data"]:
            kong_values = yaml.safe_load(doc["data"]["values.yaml"])
            containers += kong_values["deployment"]["sidecarContainers"]
        elif "config.yaml" in doc["data"]:
            assert "token:" not in doc["data"]["config.yaml"].replace("tokenFile:", "")
        else:  # the Grafana dashboard (metrics.grafanaDashboard): queries only, no settings
            assert list(doc["data"]) == ["kongsplit.json"], doc["metadata"]["name"]
    for c in containers:
        for env in c.get("env", []):
            assert "token" not in env["name"].lower(), env
            assert "value" not in env or not re.search(r"(?i)token", str(env["value"])), env
    values_doc = yaml.safe_load(values.read_text(encoding="utf-8")) or {}
    secret = values_doc.get("kong", {}).get("tokenSecret", {}).get("name")
    if secret and by_kind(docs, "Deployment"):
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "kongsplit-token")
        assert volume["secret"]["secretName"] == secret
        mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "kongsplit-token")
        assert mount["readOnly"] is True


@pytest.mark.parametrize(
    ("sets", "set_json", "complaint"),
    [
        pytest.param({"replicaCount": "-1"}, {}, "/replicaCount", id="negative-replicas"),
        pytest.param({"replicaCount": "0"}, {}, "/replicaCount", id="zero-replicas"),
        pytest.param({"mode": "daemonset"}, {}, "/mode", id="unknown-mode"),
        pytest.param({"kong.token": "s3cr3t"}, {}, "token", id="clear-token-in-kong"),
        pytest.param({"config.kong.token": "s3cr3t"}, {}, "token", id="clear-token-in-config"),
        pytest.param({"config.kong.tokenFile": "/tmp/t"}, {}, "tokenFile", id="token-file-by-hand"),
        pytest.param(
            {},
            {"extraEnv": '[{"name":"KONGSPLIT_KONG_TOKEN","value":"s3cr3t"}]'},
            "/extraEnv/0/name",
            id="token-in-extra-env",
        ),
        pytest.param({"config.kong.bogus": "1"}, {}, "bogus", id="unknown-config-key"),
        pytest.param(
            {"config.reconcile.concurrency": "0"}, {}, "concurrency", id="zero-concurrency"
        ),
        pytest.param({"config.kong.onDelete": "delete"}, {}, "onDelete", id="bad-on-delete"),
        pytest.param({"config.log.level": "trace"}, {}, "level", id="bad-log-level"),
        pytest.param({"config.kong.url": "kong:8001"}, {}, "url", id="url-without-scheme"),
        pytest.param(
            {"config.kubernetes.namespaces": "{a}"},
            {},
            "namespaces",
            id="namespaces-not-from-values",
        ),
        pytest.param(
            {"config.leaderElection.leaseNamespace": "kube-system"},
            {},
            "leaseNamespace",
            id="lease-outside-release-namespace",
        ),
        pytest.param({"metrics.serviceMonitor.bogus": "1"}, {}, "bogus", id="unknown-monitor-key"),
        pytest.param(
            {"metrics.prometheusRule.alerts.down.severity": "page"},
            {},
            "severity",
            id="bad-severity",
        ),
        pytest.param({"analysisTemplate.count": "0"}, {}, "count", id="zero-count"),
        pytest.param({"watchNamespaces[0]": "Not_A_Namespace"}, {}, "watchNamespaces", id="bad-ns"),
        pytest.param({"service.port": "70000"}, {}, "port", id="port-out-of-range"),
        pytest.param({"unknownTopLevel": "1"}, {}, "unknownTopLevel", id="unknown-top-level-key"),
        pytest.param(
            {"networkPolicy.enabled": "yes"}, {}, "networkPolicy", id="network-policy-not-bool"
        ),
        pytest.param(
            {},
            {"networkPolicy.from": '[{"namespaceSelecter": {}}]'},
            "namespaceSelecter",
            id="network-policy-peer-typo",
        ),
        pytest.param(
            {}, {"networkPolicy.from": "[{}]"}, "networkPolicy", id="network-policy-empty-peer"
        ),
    ],
)
def test_schema_rejects_bad_values(
    helm_template: Any, sets: dict[str, str], set_json: dict[str, str], complaint: str
) -> None:
    error = helm_template(sets=sets, set_json=set_json, expect_ok=False)
    assert "schema" in error, error
    assert complaint in error, error


def test_schema_is_draft_2020_12_with_closed_blocks() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    for block in (
        "kong",
        "config",
        "metrics",
        "analysisTemplate",
        "serviceAccount",
        "sidecar",
        "networkPolicy",
    ):
        assert schema["properties"][block]["additionalProperties"] is False, block


def test_values_yaml_documents_every_key() -> None:
    """Every key in values.yaml has a `# --` comment, on itself or on the block that holds it.

    helm-docs style: a commented key whose default is a structure (resources, securityContext)
    documents its whole block; an uncommented parent block needs every leaf commented.
    """
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    documented: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while documented and documented[-1][0] >= indent:
            documented.pop()
        j = i - 1
        while j >= 0 and lines[j].lstrip().startswith("#") and "# --" not in lines[j]:
            j -= 1
        own = j >= 0 and lines[j].lstrip().startswith("# --")
        inherited = any(doc for _, doc in documented)
        is_parent = line.rstrip().endswith(":")
        if not is_parent:
            assert own or inherited, f"values.yaml:{i + 1} {line.strip()} has no '# --' comment"
        documented.append((indent, own or inherited))


def test_network_policy_admits_only_its_peers_to_the_one_port(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """SECURITY.md "HTTP endpoints": only the listed peers reach kongsplit's port."""
    docs = rendered["networkpolicy"]
    policy = one(docs, "NetworkPolicy")
    pod = one(docs, "Deployment")["spec"]["template"]
    spec = policy["spec"]
    # It selects exactly kongsplit's pods, and covers ingress only.
    selector = spec["podSelector"]["matchLabels"]
    assert selector == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    port_names = {p["name"] for p in container(docs)["ports"]}
    assert rule["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert "http-metrics" in port_names
    values = yaml.safe_load(CI["networkpolicy"].read_text(encoding="utf-8"))
    assert rule["from"] == values["networkPolicy"]["from"]


@pytest.mark.parametrize(
    ("sets", "count"),
    [
        pytest.param({}, 0, id="off-by-default"),
        pytest.param({"networkPolicy.enabled": "true"}, 1, id="on"),
        pytest.param(
            {
                "networkPolicy.enabled": "true",
                "mode": "sidecar",
                "serviceAccount.create": "false",
                "serviceAccount.name": "kong",
            },
            0,
            id="never-in-sidecar-mode",  # it would select nothing of ours, and must not touch Kong
        ),
    ],
)
def test_network_policy_is_rendered_only_when_asked(
    helm_template: Any, sets: dict[str, str], count: int
) -> None:
    docs = load_docs(helm_template(sets=sets))
    policies = by_kind(docs, "NetworkPolicy")
    assert len(policies) == count
    if count:
        peers = policies[0]["spec"]["ingress"][0]["from"]
        names = [
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers
        ]
        assert names == ["argo-rollouts", "monitoring"]


def test_namespaced_mode(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["namespaced"]
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    templates = by_kind(docs, "AnalysisTemplate")
    assert sorted(t["metadata"]["namespace"] for t in templates) == ["team-a", "team-b"]


def test_monitoring_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["monitoring"]
    svc = one(docs, "Service")
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["kongsplit-system"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "http-metrics" and endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    # No label of kongsplit's clashes with the target's (the Rollout's is rollout_namespace):
    # the target's labels stay as Prometheus discovered them.
    assert endpoint["honorLabels"] is False

    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert len(alerts) == 11
    assert alerts["KongsplitDriftCorrections"]["expr"].endswith("[15m])) > 5")
    assert alerts["KongsplitSyncStale"]["labels"] == {"severity": "critical", "team": "platform"}
    for r in alerts.values():
        assert set(r) == {"alert", "expr", "for", "labels", "annotations"}

    template = one(docs, "ClusterAnalysisTemplate")
    assert template["apiVersion"] == "argoproj.io/v1alpha1"
    assert template["metadata"]["name"] == "kongsplit-verify"
    assert "namespace" not in template["metadata"]
    assert [a["name"] for a in template["spec"]["args"]] == ["namespace", "rollout"]
    (metric,) = template["spec"]["metrics"]
    assert metric["successCondition"] == "result == true"
    assert metric["interval"] == "5s" and metric["count"] == 3 and metric["failureLimit"] == 2
    web = metric["provider"]["web"]
    assert web["jsonPath"] == "{$.verified}"
    assert web["url"] == (
        "http://kongsplit.kongsplit-system.svc:9102/verify/{{args.namespace}}/{{args.rollout}}"
    )
    assert svc["metadata"]["name"] == "kongsplit"


def test_example_rollout_uses_the_analysis_template(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    template = one(rendered["monitoring"], "ClusterAnalysisTemplate")
    docs = load_docs((ROOT / "examples" / "rollout-with-analysis.yaml").read_text(encoding="utf-8"))
    rollout = one(docs, "Rollout")
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1"
    assert rollout["metadata"]["annotations"]["kongsplit.io/upstream"]
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["trafficRouting"] == {}
    services = {d["metadata"]["name"] for d in by_kind(docs, "Service")}
    assert {canary["stableService"], canary["canaryService"]} <= services
    steps = canary["steps"]
    for i, step in enumerate(steps):
        if "setWeight" in step:
            nxt = steps[i + 1]
            assert "analysis" in nxt, f"step {i + 1} after setWeight is not an analysis"
            (ref,) = nxt["analysis"]["templates"]
            assert ref == {"templateName": template["metadata"]["name"], "clusterScope": True}
            args = {a["name"]: a for a in nxt["analysis"]["args"]}
            assert set(args) == {a["name"] for a in template["spec"]["args"]}
            assert args["rollout"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            assert args["namespace"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def sidecar_snippet(docs: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = next(d for d in by_kind(docs, "ConfigMap") if "values.yaml" in d["data"])
    return yaml.safe_load(config_map["data"]["values.yaml"])


def test_sidecar_mode_renders_the_kong_chart_block(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["sidecar"]
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor"):
        assert not by_kind(docs, kind), kind
    snippet = sidecar_snippet(docs)
    assert snippet["env"]["admin_listen"].startswith("127.0.0.1:8001")
    (c,) = snippet["deployment"]["sidecarContainers"]
    standalone = container(rendered["default"])
    # Same container as the standalone Deployment, minus the readiness gate on Kong's pod.
    assert c["securityContext"] == standalone["securityContext"]
    assert c["args"] == standalone["args"]
    assert c["env"] == standalone["env"]
    assert c["livenessProbe"] == standalone["livenessProbe"]
    assert "readinessProbe" not in c
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["kongsplit-sa-token"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    volumes = {v["name"]: v for v in snippet["deployment"]["userDefinedVolumes"]}
    assert set(mounts) == set(volumes)
    assert volumes["kongsplit-config"]["configMap"]["name"] == "kongsplit-config"
    assert snippet["deployment"]["serviceAccount"] == {"create": False, "name": "kongsplit"}


def test_sidecar_snippet_in_the_docs_is_what_the_chart_renders(helm_template: Any) -> None:
    """The README's values block equals the chart's rendering for release `kongsplit` in `kong`."""
    docs = load_docs(helm_template(CI["sidecar"], namespace="kong"))
    rendered_snippet = sidecar_snippet(docs)
    for doc in (CHART / "README.md", ROOT / "docs" / "sidecar.md"):
        text = doc.read_text(encoding="utf-8")
        m = re.search(r"<!-- sidecar-values:begin -->\s*```yaml\n(.*?)```", text, flags=re.S)
        assert m, f"{doc} has no sidecar-values block"
        assert yaml.safe_load(m.group(1)) == rendered_snippet, f"{doc} drifted from the chart"


def test_missing_tool_fails_in_ci_and_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI always installs the tools, so there a missing one must fail the run, not skip."""
    from chart_support import find_tool

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="install-tools"):
        find_tool("no-such-tool-kongsplit")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="install-tools"):
        find_tool("no-such-tool-kongsplit")
