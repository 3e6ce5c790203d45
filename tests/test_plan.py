"""``kongsplit plan`` and kongsplit.manifests: reading manifests, the text and --json output,
and malformed input (exit 2, a message naming file, document, object and field, no traceback).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kongsplit.cli import main
from kongsplit.manifests import ManifestError, kind_of, read_objects

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "plan"
CHECKOUT = ROOT / "examples" / "checkout.yaml"
WITH_ANALYSIS = ROOT / "examples" / "rollout-with-analysis.yaml"
KUBECTL_LIST = DATA / "kubectl-get-rollout-svc-rs.yaml"

#: The `plan --json` keys (README, `plan --json`), and the additions it allows.
DOCUMENTED_KEYS = {
    "namespace",
    "name",
    "canary_weight",
    "stable_weight",
    "max_weight",
    "canary_service",
    "stable_service",
    "additional",
    "upstream",
    "targets",
    "skipped",
}
ALLOWED_EXTRA = {"workspace", "rule", "hold"}


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kongsplit", "plan", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["plan", "--json", *args]) == 0
    out = capsys.readouterr().out
    rollouts: list[dict[str, Any]] = json.loads(out)["rollouts"]
    return rollouts


ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  namespace: shop
  annotations: {{kongsplit.io/upstream: web.shop.svc{annotations}}}
spec:
  strategy:
    canary:
      stableService: web-stable
      canaryService: web-canary
      trafficRouting: {{{routing}}}
      steps: [{{setWeight: {weight}}}, {{pause: {{}}}}]
status: {{currentPodHash: new, stableRS: old, currentStepIndex: 1}}
"""


def rollout_yaml(annotations: str = "", routing: str = "", weight: str = "10") -> str:
    return ROLLOUT.format(annotations=annotations, routing=routing, weight=weight)


def service_yaml(
    name: str, spec: str = "{clusterIP: 10.0.0.1, ports: [{name: web, port: 80}]}"
) -> str:
    meta = f"{{name: {name}, namespace: shop}}"
    return f"apiVersion: v1\nkind: Service\nmetadata: {meta}\nspec: {spec}\n"


SERVICES = (
    service_yaml("web-stable")
    + "---\n"
    + service_yaml("web-canary", "{clusterIP: 10.0.0.2, ports: [{name: web, port: 80}]}")
)


# --------------------------------------------------------------------------- the README example


def test_checkout_example_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(CHECKOUT)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = [line.split() for line in captured.out.splitlines()]
    assert ["shop/checkout", "→", "upstream", "checkout.shop.svc"] in lines
    assert ["10.96.14.20:80", "75", "75.0%", "stable", "checkout-stable"] in lines
    assert ["10.96.14.21:80", "25", "25.0%", "canary", "checkout-canary"] in lines
    assert "split: canary 25 / stable 75 of 100" in captured.out


def test_checkout_example_json(capsys: pytest.CaptureFixture[str]) -> None:
    [checkout] = plan_json(capsys, str(CHECKOUT))
    assert {k: checkout[k] for k in DOCUMENTED_KEYS} == {
        "namespace": "shop",
        "name": "checkout",
        "canary_weight": 25,
        "stable_weight": 75,
        "max_weight": 100,
        "canary_service": "checkout-canary",
        "stable_service": "checkout-stable",
        "additional": [],
        "upstream": "checkout.shop.svc",
        "targets": [
            {"target": "10.96.14.20:80", "weight": 75, "role": "stable"},
            {"target": "10.96.14.21:80", "weight": 25, "role": "canary"},
        ],
        "skipped": None,
    }
    assert checkout["hold"] is None


def test_checkout_example_as_subprocess() -> None:
    result = run_cli("--json", "examples/checkout.yaml")
    assert (result.returncode, result.stderr) == (0, "")
    [checkout] = json.loads(result.stdout)["rollouts"]
    assert {t["target"]: t["weight"] for t in checkout["targets"]} == {
        "10.96.14.21:80": 25,
        "10.96.14.20:80": 75,
    }


def test_checkout_replica_gate_uses_the_replicaset_in_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same file with no canary pod available: Argo never routes to a ReplicaSet without one.
    text = CHECKOUT.read_text().replace("availableReplicas: 2", "availableReplicas: 0")
    assert text != CHECKOUT.read_text()
    path = tmp_path / "checkout.yaml"
    path.write_text(text)
    [checkout] = plan_json(capsys, str(path))
    assert (checkout["canary_weight"], checkout["stable_weight"]) == (0, 100)
    assert checkout["rule"] == "new-rs-unavailable"
    assert {t["target"]: t["weight"] for t in checkout["targets"]} == {
        "10.96.14.20:80": 100,
        "10.96.14.21:80": 0,
    }


# --------------------------------------------------------------------------- --json shape


@pytest.mark.parametrize(
    "files",
    [
        pytest.param([str(CHECKOUT)], id="checkout"),
        pytest.param([str(DATA / "mixed.yaml")], id="mixed"),
        pytest.param([str(DATA / "list.json")], id="list-json"),
        pytest.param([str(WITH_ANALYSIS)], id="placeholder-addresses"),
        pytest.param([str(KUBECTL_LIST)], id="kubectl-list"),
    ],
)
def test_json_has_exactly_the_design_keys(
    capsys: pytest.CaptureFixture[str], files: list[str]
) -> None:
    assert main(["plan", "--json", *files]) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document) == ["rollouts"]
    assert document["rollouts"]
    for entry in document["rollouts"]:
        assert DOCUMENTED_KEYS <= set(entry) <= DOCUMENTED_KEYS | ALLOWED_EXTRA
        for target in entry["targets"]:
            # address_pending appears, always true, on the placeholder of an unallocated clusterIP
            assert set(target) - {"address_pending"} == {"target", "weight", "role"}
            assert target.get("address_pending", True) is True
        for extra in entry["additional"]:
            assert set(extra) == {"service", "weight"}
        assert entry["skipped"] is None or (isinstance(entry["skipped"], str) and entry["skipped"])


def test_mixed_file_skips_with_a_sentence_and_computes_weights(
    capsys: pytest.CaptureFixture[str],
) -> None:
    by_name = {r["name"]: r for r in plan_json(capsys, str(DATA / "mixed.yaml"))}
    assert list(by_name) == ["cart", "admin", "search"]  # the ConfigMap is ignored

    cart = by_name["cart"]
    assert cart["skipped"] is None
    assert cart["targets"] == [
        {"target": "cart-stable.shop.svc.cluster.local:8080", "weight": 80, "role": "stable"},
        {"target": "cart-canary.shop.svc.cluster.local:8080", "weight": 20, "role": "canary"},
    ]

    admin = by_name["admin"]  # blue-green: Argo computes no weights
    assert "blue-green" in admin["skipped"]
    assert (admin["canary_weight"], admin["stable_weight"], admin["targets"]) == (None, None, [])
    assert admin["upstream"] == "admin.shop.svc"

    search = by_name["search"]  # not annotated: weights computed, nothing held
    assert search["skipped"] == "not annotated with kongsplit.io/upstream"
    assert (search["canary_weight"], search["stable_weight"], search["max_weight"]) == (30, 70, 100)
    assert (search["upstream"], search["targets"]) == (None, [])
    assert (search["canary_service"], search["stable_service"]) == (
        "search-canary",
        "search-stable",
    )


def test_list_json_with_services_ipv6_and_workspace(capsys: pytest.CaptureFixture[str]) -> None:
    [pay] = plan_json(capsys, str(DATA / "list.json"))
    assert (pay["max_weight"], pay["canary_weight"], pay["stable_weight"]) == (1000, 5, 995)
    assert pay["workspace"] == "fin"
    assert pay["targets"] == [
        {
            "target": "[fd00:0000:0000:0000:0000:0000:0000:000a]:443",
            "weight": 995,
            "role": "stable",
        },
        {"target": "[fd00:0000:0000:0000:0000:0000:0000:000b]:443", "weight": 5, "role": "canary"},
    ]


def test_services_of_another_namespace_do_not_change_a_plan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    alone = plan_json(capsys, str(DATA / "mixed.yaml"))
    together = plan_json(capsys, str(DATA / "mixed.yaml"), str(DATA / "list.json"))
    assert together[: len(alone)] == alone


def test_missing_service_in_the_input_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Services of the namespace are in the input, but not this one: the input is inconsistent.
    path = tmp_path / "r.yaml"
    path.write_text(rollout_yaml() + "---\n" + service_yaml("web-stable"))
    assert main(["plan", "--json", str(path)]) == 2
    captured = capsys.readouterr()
    [web] = json.loads(captured.out)["rollouts"]
    assert web["skipped"].endswith("Service shop/web-canary not found")
    assert (web["canary_weight"], web["stable_weight"], web["targets"]) == (10, 90, [])
    assert captured.err == (
        f"kongsplit plan: {path}, document 1: Rollout shop/web: spec.strategy.canary: "
        "Service shop/web-canary not found\n"
    )


def test_experiment_destinations_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = rollout_yaml(routing="plugins: {argoproj-labs/kong: {}}").replace(
        "status: {currentPodHash: new, stableRS: old, currentStepIndex: 1}",
        "status:\n  currentPodHash: new\n  stableRS: old\n  currentStepIndex: 1\n"
        "  canary:\n    weights:\n"
        "      canary: {weight: 10, podTemplateHash: new}\n"
        "      stable: {weight: 70, podTemplateHash: old}\n"
        "      additional: [{weight: 20, podTemplateHash: e, serviceName: web-exp}]\n",
    )
    path = tmp_path / "r.yaml"
    path.write_text(
        text
        + "---\n"
        + SERVICES
        + "---\n"
        + service_yaml("web-exp", "{clusterIP: 10.0.0.3, ports: [{port: 80}]}")
    )
    [web] = plan_json(capsys, str(path))
    assert web["additional"] == [{"service": "web-exp", "weight": 20}]
    assert web["targets"] == [
        {"target": "10.0.0.1:80", "weight": 70, "role": "stable"},
        {"target": "10.0.0.2:80", "weight": 10, "role": "canary"},
        {"target": "10.0.0.3:80", "weight": 20, "role": "experiment"},
    ]


@pytest.mark.parametrize(
    ("args", "target"),
    [
        pytest.param([], "web-stable.shop.svc.cluster.local:8080", id="default-domain"),
        pytest.param(
            ["--cluster-domain", "k8s.lan"],
            "web-stable.shop.svc.k8s.lan:8080",
            id="cluster-domain-flag",
        ),
    ],
)
def test_cluster_domain_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], target: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(rollout_yaml(annotations=", kongsplit.io/port: '8080'"))
    [web] = plan_json(capsys, *args, str(path))
    assert web["targets"][0]["target"] == target


def test_workspace_flag_is_the_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(rollout_yaml() + "---\n" + SERVICES)
    [web] = plan_json(capsys, "--workspace", "team-a", str(path))
    assert web["workspace"] == "team-a"


# --------------------------------------------------------------------------- input forms


def test_stdin_dash_subprocess() -> None:
    result = run_cli("--json", "-", stdin=CHECKOUT.read_text())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rollouts"][0]["canary_weight"] == 25


def test_no_files_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(CHECKOUT.read_text()))
    [checkout] = plan_json(capsys)
    assert checkout["name"] == "checkout"


def test_several_files_and_stdin_together(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO((DATA / "list.json").read_text()))
    names = [r["name"] for r in plan_json(capsys, str(CHECKOUT), "-")]
    assert names == ["checkout", "pay"]


def test_empty_input_text(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("---\n# nothing\n---\n")
    assert main(["plan", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "no Rollouts in the input"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "kind: ConfigMap\n---\n---\nkind: Secret\n",
            [("ConfigMap", "f.yaml, document 1"), ("Secret", "f.yaml, document 3")],
            id="multi-document-empty-skipped",
        ),
        pytest.param(
            "apiVersion: v1\nkind: List\nitems: [{kind: A}, {kind: B}]\n---\nkind: C\n",
            [
                ("A", "f.yaml, document 1, items[0]"),
                ("B", "f.yaml, document 1, items[1]"),
                ("C", "f.yaml, document 2"),
            ],
            id="list-flattened",
        ),
        pytest.param(
            "kind: RolloutList\nitems: [{kind: Rollout}]\n",
            [("Rollout", "f.yaml, document 1, items[0]")],
            id="typed-list",
        ),
        pytest.param('{"kind": "Service"}', [("Service", "f.yaml, document 1")], id="json"),
        pytest.param(
            '{"kind": "List", "items": [{"kind": "X"}]}',
            [("X", "f.yaml, document 1, items[0]")],
            id="json-list",
        ),
        pytest.param("{kind: Flow}\n", [("Flow", "f.yaml, document 1")], id="yaml-flow-map"),
        pytest.param(
            "kind: ServiceList\nmetadata: {}\n",
            [("ServiceList", "f.yaml, document 1")],
            id="list-kind-without-items-is-an-object",
        ),
    ],
)
def test_read_objects(tmp_path: Path, text: str, expected: list[tuple[str, str]]) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    got = [
        (kind_of(o.obj)[1], o.source.replace(str(tmp_path) + "/", ""))
        for o in read_objects([str(path)])
    ]
    assert got == expected


def test_kind_of_tolerates_odd_types() -> None:
    assert kind_of({"apiVersion": 1, "kind": ["x"]}) == ("", "")
    assert kind_of({"apiVersion": "v1", "kind": "Service"}) == ("v1", "Service")


def test_read_objects_error_is_a_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("kind: A\n---\nkind: [\n")
    with pytest.raises(ManifestError, match=r"f\.yaml, document 2: not valid YAML or JSON"):
        read_objects([str(path)])


# --------------------------------------------------------------------------- malformed input

#: (file content, words the one-line message must hold after "FILE, document N: ").
MALFORMED = [
    pytest.param(
        "kind: Rollout\nmetadata:\n\tname: web\n",
        1,
        ["not valid YAML or JSON", "line 3, column 1", "'\\t'"],
        id="not-yaml",
    ),
    pytest.param(
        "kind: ConfigMap\n---\nkind: Rollout\n  bad: indent\n",
        2,
        ["not valid YAML or JSON"],
        id="not-yaml-second-document",
    ),
    pytest.param(
        '{"kind": "Rollout", ',
        1,
        ["not valid YAML or JSON"],
        id="broken-json",
    ),
    pytest.param(
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: web, namespace: shop}\n",
        1,
        ["Rollout shop/web", "spec", "is required"],
        id="rollout-without-spec",
    ),
    pytest.param(
        rollout_yaml(weight='"ten"'),
        1,
        ["Rollout shop/web", "spec.strategy.canary.steps[0].setWeight", "'ten'"],
        id="setweight-ten",
    ),
    pytest.param(
        rollout_yaml(routing="maxTrafficWeight: 0"),
        1,
        ["Rollout shop/web", "spec.strategy.canary.trafficRouting.maxTrafficWeight", "got 0"],
        id="max-traffic-weight-0",
    ),
    pytest.param(
        rollout_yaml(annotations=", kongsplit.io/port: http") + "---\n" + SERVICES,
        1,
        [
            "Rollout shop/web",
            "metadata.annotations[kongsplit.io/port]",
            "Service shop/web-stable has no port named 'http' (ports: web)",
        ],
        id="port-annotation-names-no-port",
    ),
    pytest.param(
        rollout_yaml(annotations=", kongsplit.io/target-mode: nodeport"),
        1,
        ["Rollout shop/web", "metadata.annotations[kongsplit.io/target-mode]", "'nodeport'"],
        id="bad-target-mode",
    ),
    pytest.param(
        rollout_yaml(annotations=", kongsplit.io/color: blue"),
        1,
        ["Rollout shop/web", "metadata.annotations[kongsplit.io/color]", "unknown annotation"],
        id="unknown-annotation",
    ),
    pytest.param(
        rollout_yaml()
        + "---\n"
        + service_yaml("web-stable")
        + "---\n"
        + service_yaml("web-canary", "{clusterIP: None, ports: [{port: 80}]}"),
        3,
        [
            "Service shop/web-canary",
            "spec.clusterIP",
            "headless",
            "needed by Rollout shop/web",
            "document 1",
        ],
        id="headless-service",
    ),
    pytest.param(
        rollout_yaml()
        + "---\n"
        + service_yaml("web-stable")
        + "---\n"
        + service_yaml("web-canary", "{type: ExternalName, externalName: x.example}"),
        3,
        ["Service shop/web-canary", "spec.type", "ExternalName"],
        id="external-name-service",
    ),
    pytest.param(
        rollout_yaml()
        + "---\n"
        + service_yaml("web-stable")
        + "---\n"
        + service_yaml("web-canary", "{clusterIP: 10.0.0.1, ports: [{name: web, port: 80}]}"),
        1,
        ["Rollout shop/web", "spec.strategy.canary", "same Kong target 10.0.0.1:80"],
        id="both-services-same-target",
    ),
    pytest.param(
        service_yaml("web-stable", "{clusterIP: 10.0.0.1, ports: [{port: '80'}]}"),
        1,
        ["Service shop/web-stable", "spec.ports[0].port", "'80'"],
        id="service-port-string",
    ),
    pytest.param(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: rs, namespace: shop}\n"
        "status: {availableReplicas: -1}\n",
        1,
        ["ReplicaSet shop/rs", "status.availableReplicas", "-1"],
        id="replicaset-negative",
    ),
    pytest.param(
        "apiVersion: v1\nkind: List\nitems: {a: 1}\n",
        1,
        ["items", "list"],
        id="list-items-not-a-list",
    ),
    pytest.param(
        "apiVersion: v1\nkind: List\nitems: [kind, 3]\n",
        1,
        ["items[0]", "mapping"],
        id="list-item-not-a-mapping",
    ),
    pytest.param(
        "- kind: Rollout\n",
        1,
        ["expected a Kubernetes object", "got list"],
        id="document-is-a-list",
    ),
    pytest.param(
        "kind: A\n---\njust words\n",
        2,
        ["expected a Kubernetes object", "got str"],
        id="document-is-a-string",
    ),
    pytest.param("[" * 5000, 1, ["nested too deeply"], id="json-nested-too-deeply"),
]


@pytest.mark.parametrize(("text", "document", "words"), MALFORMED)
def test_malformed_input_exits_2_naming_file_document_object_field(
    tmp_path: Path, text: str, document: int, words: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run_cli(str(path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"kongsplit plan: {path}, document {document}: "), first
    for word in words:
        assert word in first, (word, first)


@pytest.mark.parametrize(("text", "document", "words"), MALFORMED)
def test_malformed_input_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, document: int, words: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["plan", "--json", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}, document {document}: " in err
    assert all(word in err for word in words)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        pytest.param(lambda p: p / "missing.yaml", "cannot read: No such file", id="missing"),
        pytest.param(lambda p: p, "cannot read: Is a directory", id="directory"),
        pytest.param(
            lambda p: (p / "latin1.yaml", (p / "latin1.yaml").write_bytes(b"kind: caf\xe9\n"))[0],
            "cannot read: 'utf-8' codec can't decode",
            id="not-utf8",
        ),
    ],
)
def test_unreadable_file_exits_2(tmp_path: Path, make: Any, words: str) -> None:
    path = make(tmp_path)
    result = run_cli(str(CHECKOUT), str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"kongsplit plan: {path}: {words}" or result.stderr.startswith(
        f"kongsplit plan: {path}: {words}"
    )
    assert result.stdout == ""  # nothing is planned from half the input


def test_every_problem_is_listed_and_good_rollouts_still_planned(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        rollout_yaml(weight='"ten"')
        + "---\n"
        + rollout_yaml(annotations=", kongsplit.io/target-mode: nodeport").replace("web", "api")
    )
    result = run_cli("--json", str(CHECKOUT), str(bad))
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert f"{bad}, document 1: Rollout shop/web: spec.strategy.canary.steps[0]" in errors[0]
    assert f"{bad}, document 2: Rollout shop/api: metadata.annotations[" in errors[1]
    names = [r["name"] for r in json.loads(result.stdout)["rollouts"]]
    assert names == ["checkout", "api"]  # a Rollout that cannot be parsed has no entry


def test_plan_help_and_usage_errors() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kongsplit", "plan", "--no-such-flag"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr


# --------------------------------------------------------------------------- manifests not applied


def test_analysis_example_is_planned_with_placeholder_addresses() -> None:
    result = run_cli(str(WITH_ANALYSIS.relative_to(ROOT)))
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == "shop/checkout  → upstream checkout.shop.svc"
    assert lines[1] == "  split: canary 0 / stable 100 of 100  (rule: fully-promoted)"
    assert lines[3].split() == [
        "<clusterIP",
        "of",
        "shop/checkout-stable>:80",
        "100",
        "100.0%",
        "stable",
        "checkout-stable",
    ]
    assert "<clusterIP of shop/checkout-canary>:80       0    0.0%  canary" in lines[4]
    assert lines[5] == (
        "  note: the cluster allocates <clusterIP of …> when the Service is applied; "
        "the weights are exact"
    )


def test_placeholder_targets_carry_exact_weights_and_are_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One Service applied (clusterIP known), one not: only the second is a placeholder.
    path = tmp_path / "r.yaml"
    path.write_text(
        rollout_yaml(annotations=", kongsplit.io/port: web")
        + "---\n"
        + service_yaml("web-stable")
        + "---\n"
        + service_yaml(
            "web-canary", "{ports: [{name: metrics, port: 9090}, {name: web, port: 81}]}"
        )
    )
    [web] = plan_json(capsys, str(path))
    assert web["targets"] == [
        {"target": "10.0.0.1:80", "weight": 90, "role": "stable"},
        {
            "target": "<clusterIP of shop/web-canary>:81",
            "weight": 10,
            "role": "canary",
            "address_pending": True,
        },
    ]
    assert (web["canary_weight"], web["stable_weight"], web["skipped"]) == (10, 90, None)
    assert main(["plan", str(path)]) == 0
    assert "note: the cluster allocates <clusterIP of …>" in capsys.readouterr().out


def test_no_note_when_every_address_is_known(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(CHECKOUT)]) == 0
    assert "note:" not in capsys.readouterr().out


# --------------------------------------------------------------------------- kubectl get -o yaml


def test_kubectl_get_list_uses_its_services_and_replicasets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`kubectl get rollout,svc,rs -n shop -o yaml --show-managed-fields`, as it prints it: the
    Rollout is at setWeight 50 but its canary ReplicaSet has 2 of 4 pods, so Argo (and plan)
    keep the previous step's 25; the targets are the listed Services' clusterIPs."""
    [checkout] = plan_json(capsys, str(KUBECTL_LIST))
    assert (checkout["canary_weight"], checkout["stable_weight"]) == (25, 75)
    assert checkout["rule"] == "replica-gate-previous"
    assert checkout["hold"] is None  # observedGeneration "4" matches generation 4
    assert checkout["targets"] == [
        {"target": "10.96.14.20:80", "weight": 75, "role": "stable"},
        {"target": "10.96.14.21:80", "weight": 25, "role": "canary"},
    ]


def test_kubectl_get_list_without_its_replicasets_is_the_bare_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The control: the same List with the ReplicaSets taken out has nothing to gate on.
    listing = yaml.safe_load(KUBECTL_LIST.read_text())
    assert listing["kind"] == "List" and listing["apiVersion"] == "v1"
    listing["items"] = [i for i in listing["items"] if i["kind"] != "ReplicaSet"]
    path = tmp_path / "no-rs.yaml"
    path.write_text(yaml.safe_dump(listing))
    [checkout] = plan_json(capsys, str(path))
    assert (checkout["canary_weight"], checkout["rule"]) == (50, "step")


# --------------------------------------------------------------------------- the same object twice


def test_a_service_given_twice_with_different_content_is_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "app.yaml", tmp_path / "services.yaml"
    first.write_text(rollout_yaml() + "---\n" + SERVICES)
    second.write_text(
        service_yaml("web-canary", "{clusterIP: 10.0.0.9, ports: [{name: web, port: 80}]}")
    )
    result = run_cli(str(first), str(second))
    assert (result.returncode, result.stdout) == (2, "")  # nothing planned from a contradiction
    assert result.stderr == (
        f"kongsplit plan: Service shop/web-canary is given twice with different content, in "
        f"{first}, document 3 and in {second}, document 1 (spec.clusterIP: '10.0.0.2' vs "
        "'10.0.0.9'): give each Service once\n"
    )


def test_a_rollout_given_twice_with_different_content_is_refused() -> None:
    result = run_cli("examples/checkout.yaml", "examples/rollout-with-analysis.yaml")
    assert (result.returncode, result.stdout) == (2, "")
    errors = result.stderr.splitlines()
    assert errors[0] == (
        "kongsplit plan: Rollout shop/checkout is given twice with different content, in "
        "examples/checkout.yaml, document 1 and in examples/rollout-with-analysis.yaml, "
        "document 1 (metadata.generation: 3 vs absent): give each Rollout once"
    )
    assert [e.split(" is given")[0] for e in errors[1:]] == [
        "kongsplit plan: Service shop/checkout-stable",
        "kongsplit plan: Service shop/checkout-canary",
    ]


def test_a_knative_service_of_the_same_name_is_another_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.yaml"
    knative = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: web-canary, "
    path.write_text(rollout_yaml() + "---\n" + SERVICES + "---\n" + knative + "namespace: shop}\n")
    [web] = plan_json(capsys, str(path))
    assert [t["target"] for t in web["targets"]] == ["10.0.0.1:80", "10.0.0.2:80"]


def test_identical_copies_are_accepted_once(capsys: pytest.CaptureFixture[str]) -> None:
    once = plan_json(capsys, str(CHECKOUT))
    assert plan_json(capsys, str(CHECKOUT), str(CHECKOUT)) == once


# --------------------------------------------------------------------------- stdin on a terminal


def _on_a_terminal(*args: str, typed: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """``kongsplit plan ARGS`` with stdin a terminal (a pty), optionally typing ``typed``."""
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kongsplit", "plan", *args],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        if typed is not None:
            os.write(leader, typed)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"kongsplit plan {' '.join(args)} waited on the terminal")
    finally:
        os.close(leader)
        os.close(follower)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_no_file_on_a_terminal_says_what_to_give() -> None:
    result = _on_a_terminal()
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: kongsplit plan [-h]")
    assert "--kubeconfig FILE" in result.stderr and "[FILE ...]" in result.stderr
    assert lines[-1] == (
        "kongsplit plan: give Rollout manifests as files, '-' for stdin, or --kubeconfig to read "
        "a cluster"
    )


def test_dash_still_reads_a_terminal() -> None:
    # Typed at the terminal, ended with Ctrl-D at the start of a line.
    typed = CHECKOUT.read_text().encode() + b"\n\x04"
    result = _on_a_terminal("--json", "-", typed=typed)
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["rollouts"][0]["canary_weight"] == 25
