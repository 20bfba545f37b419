"""helm lint, helm template for every profile, strict schema validation, drift."""

from __future__ import annotations

import copy
import filecmp
import re
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml
from manifest_helpers import (
    CHARTS,
    K8S_VERSIONS,
    PLATFORM,
    PROFILES,
    RAYJOB,
    ROOT,
    by_kind,
    crds_dir,
    load_yaml,
    run,
)

CUSTOM_KINDS = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml",
                "RayService": "ray.io_rayservices.yaml"}


@pytest.mark.parametrize(
    "chart,values",
    [
        (RAYJOB, None),
        (RAYJOB, "values-cpu-kind.yaml"),
        (PLATFORM, None),
        (PLATFORM, "values-dev.yaml"),
        (PLATFORM, "values-production.yaml"),
    ],
    ids=["rayjob", "rayjob-cpu-kind", "platform", "platform-dev", "platform-production"],
)
def test_helm_lint(tools, chart, values):
    cmd = [str(tools / "helm"), "lint", str(chart), "--strict" if chart == RAYJOB else "--quiet"]
    if values:
        cmd += ["-f", str(chart / values)]
    proc = run(cmd)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "[ERROR]" not in out, out
    warnings = [line for line in out.splitlines() if "[WARNING]" in line]
    assert not warnings, out


def test_every_chart_is_covered():
    charts = sorted(p.parent.name for p in CHARTS.glob("*/Chart.yaml"))
    assert charts == ["kuberay-mnist-platform", "kuberay-mnist-rayjob"]
    for chart in CHARTS.glob("*/"):
        if not (chart / "Chart.yaml").exists():
            continue
        assert load_yaml(chart / "Chart.yaml")["apiVersion"] == "v2"
        for values in chart.glob("values*.yaml"):
            assert any(p.chart == chart and (values.name == "values.yaml" or values.name in p.values) for p in PROFILES.values()), (
                f"{values} is not rendered by any test profile"
            )


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_renders(render, profile):
    docs = render(profile)
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"), d
        assert d["metadata"].get("namespace") == "mnist", f"{d['kind']}/{d['metadata']['name']} has no namespace"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_kubernetes_schema_strict(render, profile, version):
    checked = 0
    for d in render(profile):
        if d["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{d['kind']}/{d['metadata']['name']} invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}")
        checked += 1
    if profile.startswith("platform"):
        assert checked >= (7 if profile == "platform-production" else 10)  # production has no MinIO


def _strict(schema):
    """CRD structural schema -> JSON schema that rejects unknown fields, as the API
    server's strict field validation (kubectl's default) does."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


_CRD_CACHE: dict[str, dict] = {}


def crd_schema(kind: str, version: str) -> dict:
    key = f"{kind}/{version}"
    if key not in _CRD_CACHE:
        path = crds_dir() / CUSTOM_KINDS[kind]
        assert path.is_file(), f"KubeRay CRD not found: {path} (set KUBERAY_CRDS_DIR)"
        crd = load_yaml(path)
        (ver,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = _strict(ver["schema"]["openAPIV3Schema"])
        # metadata is validated by the API server, not by the CRD schema.
        schema["properties"]["metadata"] = {"type": "object"}
        _CRD_CACHE[key] = schema
    return _CRD_CACHE[key]


def validate_custom(obj: dict) -> None:
    group_version = obj["apiVersion"]
    assert group_version == "ray.io/v1", f"{obj['kind']} must use ray.io/v1, not {group_version}"
    jsonschema.validate(obj, crd_schema(obj["kind"], "v1"), cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("profile", [p for p in sorted(PROFILES) if p.startswith("rayjob")])
def test_rayjob_matches_kuberay_crd(render, profile):
    customs = [d for d in render(profile) if d["kind"] in CUSTOM_KINDS]
    assert len(by_kind(customs, "RayJob")) == 1
    for d in customs:
        try:
            validate_custom(d)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{d['kind']}/{d['metadata']['name']}: {exc.message} at {list(exc.absolute_path)}")


@pytest.mark.parametrize("profile", ["rayservice-gpu", "rayservice-cpu-kind"])
def test_rayservice_matches_kuberay_crd_and_serves_the_champion(render, profile):
    docs = render(profile)
    assert not by_kind(docs, "RayJob"), "a serving render holds no RayJob"
    [service] = by_kind(docs, "RayService")
    try:
        validate_custom(service)
    except jsonschema.ValidationError as exc:
        pytest.fail(f"RayService: {exc.message} at {list(exc.absolute_path)}")
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    [app] = serve["applications"]
    assert app["import_path"] == "mnist_job.serving.app:app_builder" and app["args"]["model"] == "mnist-cnn"
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "serve", "containerPort": 8000} in head["ports"]
    assert "MLFLOW_TRACKING_URI" in {e["name"] for e in head["env"]}
    [serve_policy] = [p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-ray-serve")]
    assert serve_policy["spec"]["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    bad = copy.deepcopy(service)
    bad["spec"]["serviceUnhealthySecondThreshold"] = "900"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(bad)


def test_crd_validation_can_fail(render):
    """The CRD check catches an unknown field, a wrong type and a missing required field."""
    rayjob = by_kind(render("rayjob-gpu"), "RayJob")[0]
    validate_custom(rayjob)
    for mutate in (
        lambda s: s.update(shutdownAfterJobFinish=True),  # typo
        lambda s: s.update(activeDeadlineSeconds="7200"),  # string, not integer
        lambda s: s["rayClusterSpec"]["workerGroupSpecs"][0].pop("groupName"),  # required
        lambda s: s["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(imagePullPolicy=3),
    ):
        bad = copy.deepcopy(rayjob)
        mutate(bad["spec"])
        with pytest.raises(jsonschema.ValidationError):
            validate_custom(bad)


def test_generated_manifests_have_no_drift(tools, tmp_path):
    proc = run(["bash", str(ROOT / "scripts" / "render-manifests.sh"), str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    expected = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert expected == ["platform-dev.yaml", "rayjob-cpu-kind.yaml", "rayjob-tune-cpu-kind.yaml", "rayjob-tune.yaml",
                        "rayjob.yaml", "rayservice-cpu-kind.yaml", "rayservice.yaml"]
    for name in expected:
        committed = ROOT / "k8s" / name
        assert committed.exists(), f"k8s/{name} missing: run `make manifests`"
        assert filecmp.cmp(committed, tmp_path / name, shallow=False), (
            f"k8s/{name} differs from a fresh render of the chart: run `make manifests`\n"
            + subprocess.run(["diff", "-u", str(committed), str(tmp_path / name)], capture_output=True, text=True).stdout[:4000]
        )
    for name in expected:
        assert (ROOT / "k8s" / name).read_text().startswith("# GENERATED FILE - do not edit.")
    stray = sorted({p.name for p in (ROOT / "k8s").glob("*.yaml")} - set(expected))
    assert not stray, f"k8s/ holds files not produced by `make manifests`: {stray}"


def test_charts_render_offline_without_dependencies(tools, tmp_path):
    """No subchart: `helm template` and `helm install` need no repository and no
    `helm dependency update` (the KubeRay operator comes from its own chart)."""
    for chart in (PLATFORM, RAYJOB):
        meta = load_yaml(chart / "Chart.yaml")
        assert "dependencies" not in meta, f"{chart.name} has dependencies: {meta['dependencies']}"
        assert not (chart / "charts").exists(), f"{chart.name}/charts/ holds subcharts"
        assert not (chart / "Chart.lock").exists()
    # A plain `helm template` (no helper script) of the dev profile works, with an
    # empty helm home: no repository is configured or reachable.
    env = {"HELM_CACHE_HOME": str(tmp_path / "c"), "HELM_CONFIG_HOME": str(tmp_path / "f"), "HELM_DATA_HOME": str(tmp_path / "d")}
    proc = run([str(tools / "helm"), "template", "p", str(PLATFORM), "-f", str(PLATFORM / "values-dev.yaml")], extra_env=env)
    assert proc.returncode == 0, proc.stderr
    assert "kind: Deployment" in proc.stdout
    for f in [ROOT / "Makefile", *(ROOT / "mk").glob("*.mk"), *(ROOT / "scripts").glob("*.sh"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        assert "kuberay-operator.enabled" not in f.read_text(), f"{f.relative_to(ROOT)} still switches the removed subchart"


def test_manifests_for_your_own_registry(tools, tmp_path):
    """`make manifests IMAGE=<repository>`: every project image comes from it, tags unchanged."""
    repo = "registry.example.com/team/kuberay-mnist"
    proc = run(["bash", str(ROOT / "scripts" / "render-manifests.sh"), str(tmp_path)], extra_env={"IMAGE": repo})
    assert proc.returncode == 0, proc.stderr
    images = set()
    for f in tmp_path.glob("*.yaml"):
        text = f.read_text()
        assert f"# Image repository: {repo}" in text.split("\n", 4)[2]
        for d in (d for d in yaml.safe_load_all(text) if d):
            images |= set(re.findall(r"image: (\S+)", yaml.safe_dump(d)))
    project = {i for i in images if "minio" not in i}
    assert project == {f"{repo}:0.1.0-cpu", f"{repo}:0.1.0-gpu", f"{repo}:dev-cpu"}, project
    bad = run(["bash", str(ROOT / "scripts" / "render-manifests.sh"), str(tmp_path)], extra_env={"IMAGE": f"{repo}:1.0"})
    assert bad.returncode == 2 and "without a tag" in bad.stderr
