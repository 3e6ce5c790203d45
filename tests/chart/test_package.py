"""The chart as users get it: `helm package`, pushed to and pulled from a real OCI registry.

The registry is CNCF Distribution (Debian's `docker-registry`, put in `.tools/bin` by
`.ci/install-tools`) serving on 127.0.0.1 for the duration of one test. The chart's metadata
(what `helm show chart` and Artifact Hub display) is checked against the rest of the repository.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tarfile
import time
import tomllib
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, CI_VALUES, ROOT, find_tool

HOME = "https://github.com/kongsplit/kongsplit"
ICON_PREFIX = "https://raw.githubusercontent.com/kongsplit/kongsplit/main/"
HELM_CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def chart_yaml() -> dict[str, Any]:
    return yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))


def project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_app_version_is_the_package_version() -> None:
    """appVersion is the kongsplit release the chart runs: the Python package's version, the
    image tag Artifact Hub lists and the Dockerfile's VERSION label."""
    chart = chart_yaml()
    version = project()["version"]
    assert chart["appVersion"] == version
    (image,) = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["image"]["tag"] == ""  # so the tag defaults to appVersion
    assert image["image"] == f"{values['image']['repository']}:{version}"
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG VERSION={version}\n" in dockerfile


def test_chart_metadata_for_helm_show_and_artifact_hub() -> None:
    chart = chart_yaml()
    assert chart["apiVersion"] == "v2" and chart["type"] == "application"
    assert chart["home"] == HOME and chart["sources"] == [HOME]
    assert project()["urls"]["Source"] == HOME
    assert f'org.opencontainers.image.source="{HOME}"' in (ROOT / "Dockerfile").read_text(
        encoding="utf-8"
    )
    assert chart["kubeVersion"] == ">=1.25.0-0"
    assert {"argo-rollouts", "kong", "canary"} <= set(chart["keywords"])
    for maintainer in chart["maintainers"]:
        assert maintainer["name"] and maintainer["url"].startswith("https://")
    notes = chart["annotations"]
    assert notes["artifacthub.io/license"] == project()["license"]
    assert notes["artifacthub.io/category"] == "integration-delivery"
    for link in yaml.safe_load(notes["artifacthub.io/links"]):
        assert link["name"] and link["url"].startswith(HOME), link
        if "/blob/main/" in link["url"]:
            assert (ROOT / link["url"].split("/blob/main/", 1)[1]).is_file(), link
    for rec in yaml.safe_load(notes["artifacthub.io/recommendations"]):
        assert rec["url"].startswith("https://artifacthub.io/packages/helm/"), rec


def test_icon_url_is_a_file_of_this_repository() -> None:
    """The icon is served from the repository's main branch: the URL must name a real SVG."""
    icon = chart_yaml()["icon"]
    assert icon.startswith(ICON_PREFIX), icon
    path = ROOT / icon.removeprefix(ICON_PREFIX)
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 128 128"  # square, as Artifact Hub shows icons


@pytest.fixture
def helm_env(tmp_path: Path) -> dict[str, str]:
    """helm with its cache, config and registry logins under tmp_path (never the user's)."""
    env = dict(os.environ)
    for name in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{name}_HOME"] = str(tmp_path / "helm" / name.lower())
    env["HELM_REGISTRY_CONFIG"] = str(tmp_path / "helm" / "registry.json")
    return env


def helm_run(
    helm: str, env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [helm, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture
def packaged(helm: str, helm_env: dict[str, str], tmp_path: Path) -> Path:
    """`helm package charts/kongsplit`, as the README says, into a temporary directory."""
    out = tmp_path / "dist"
    proc = helm_run(helm, helm_env, "package", str(CHART), "--destination", str(out))
    version = chart_yaml()["version"]
    tgz = out / f"kongsplit-{version}.tgz"
    assert f"saved it to: {tgz}" in proc.stdout
    assert [p.name for p in out.iterdir()] == [tgz.name]
    return tgz


@pytest.mark.tools
def test_helm_package_holds_the_chart_and_renders_as_the_source(
    packaged: Path, helm: str, helm_env: dict[str, str]
) -> None:
    with tarfile.open(packaged) as tar:
        names = set(tar.getnames())
    for required in (
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        "README.md",
        "templates/deployment.yaml",
        "templates/_helpers.tpl",
    ):
        assert f"kongsplit/{required}" in names, required
    assert all(n.startswith("kongsplit/") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith((".orig", ".rej", "~"))]
    values = str(CI_VALUES[0])
    from_dir = helm_run(helm, helm_env, "template", "k", str(CHART), "-f", values).stdout
    from_tgz = helm_run(helm, helm_env, "template", "k", str(packaged), "-f", values).stdout
    assert from_tgz == from_dir
    lint = helm_run(helm, helm_env, "lint", "--strict", str(packaged))
    assert "0 chart(s) failed" in lint.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def oci_registry(tmp_path: Path) -> Iterator[str]:
    """A real OCI registry (CNCF Distribution) on 127.0.0.1; yields host:port."""
    binary = find_tool("docker-registry")
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry-data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        ),
        encoding="utf-8",
    )
    log = (tmp_path / "registry.log").open("w", encoding="utf-8")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    "docker-registry did not start:\n"
                    + (tmp_path / "registry.log").read_text(encoding="utf-8")
                )
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.tools
def test_oci_push_pull_and_template(
    packaged: Path, helm: str, helm_env: dict[str, str], oci_registry: str, tmp_path: Path
) -> None:
    """The README's `helm push … oci://` then `helm install … oci://`, against a real registry:
    what is pulled is byte for byte what was pushed, stored as a Helm chart artifact, and renders
    exactly as the chart in the repository."""
    version = chart_yaml()["version"]
    repo = f"oci://{oci_registry}/charts"
    pushed = helm_run(helm, helm_env, "push", str(packaged), repo, "--plain-http")
    assert f"Pushed: {oci_registry}/charts/kongsplit:{version}" in pushed.stdout + pushed.stderr

    # What the registry holds: an OCI manifest with Helm's config and chart layer media types.
    request = urllib.request.Request(
        f"http://{oci_registry}/v2/charts/kongsplit/manifests/{version}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        manifest = json.load(r)
    assert manifest["config"]["mediaType"] == HELM_CONFIG_MEDIA_TYPE
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == HELM_CHART_MEDIA_TYPE
    assert layer["size"] == packaged.stat().st_size

    pulled_dir = tmp_path / "pulled"
    pulled_dir.mkdir()
    ref = f"{repo}/kongsplit"
    helm_run(
        helm, helm_env, "pull", ref, "--version", version, "--plain-http", "-d", str(pulled_dir)
    )
    (pulled,) = pulled_dir.iterdir()
    assert pulled.read_bytes() == packaged.read_bytes()

    shown = helm_run(helm, helm_env, "show", "chart", ref, "--version", version, "--plain-http")
    assert yaml.safe_load(shown.stdout) == chart_yaml()

    values = str(CI_VALUES[0])
    remote = helm_run(
        helm,
        helm_env,
        "template",
        "kongsplit",
        ref,
        "--version",
        version,
        "--plain-http",
        "-f",
        values,
    ).stdout
    local = helm_run(helm, helm_env, "template", "kongsplit", str(CHART), "-f", values).stdout
    assert remote == local


def test_readme_oci_commands_name_this_chart_version() -> None:
    """The chart README's package/push/install commands use the version `helm package` writes."""
    version = chart_yaml()["version"]
    chart_readme = (CHART / "README.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in (
        chart_readme.split("### From an OCI registry", 1)[1].split("\n### ", 1)[0],
        readme.split("From an OCI registry", 1)[1].split("\n```\n", 1)[0],
    ):
        assert "helm push" in block and "helm install kongsplit oci://" in block
        assert set(re.findall(r"kongsplit-([\w.+-]+)\.tgz", block)) == {version}
        assert set(re.findall(r"--version (\S+)", block)) == {version}
