"""hadolint, shellcheck and checkov (on the rendered manifests and the Dockerfile)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from manifest_helpers import PLATFORM, RAYJOB, ROOT, load_yaml, run

SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


def test_hadolint(tools):
    proc = run([str(tools / "hadolint"), "--failure-threshold", "info", str(ROOT / "image" / "Dockerfile")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_can_fail(tools, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray\nRUN pip install torch\n")
    assert run([str(tools / "hadolint"), str(bad)]).returncode != 0


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_shell_scripts(tools, script):
    assert run(["bash", "-n", str(script)]).returncode == 0
    proc = run([str(tools / "shellcheck"), "--severity=info", str(script)])
    assert proc.returncode == 0, proc.stdout


def test_expected_scripts_exist():
    names = {s.name for s in SCRIPTS}
    assert {"install-tools.sh", "kind-up.sh", "kind-down.sh", "deploy-rayjob.sh", "deploy-rayservice.sh",
            "deploy-common.sh", "render-manifests.sh", "helm-template.sh"} <= names


# --------------------------------------------------------------------------- release workflow

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_actionlint(tools, workflow):
    # actionlint also shellchecks each `run:` script when shellcheck is on PATH (run() puts .tools/bin there).
    proc = run([str(tools / "actionlint"), "-no-color", str(workflow)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_can_fail(tools, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.event.head_commit.message }\n")
    proc = run([str(tools / "actionlint"), "-no-color", str(bad)])
    assert proc.returncode != 0 and "bad.yml" in proc.stdout


def test_release_workflow_publishes_what_the_charts_use():
    wf = load_yaml(ROOT / ".github" / "workflows" / "release.yml")
    on = wf.get("on", wf.get(True))  # PyYAML reads the key `on` as True
    assert on["push"]["tags"] == ["v*"]
    job = wf["jobs"]["image"]
    assert job["permissions"]["packages"] == "write"
    assert job["strategy"]["matrix"]["variant"] == ["cpu", "gpu"]
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("docker/setup-qemu-action@") for u in uses)
    assert any(u.startswith("docker/setup-buildx-action@") for u in uses)
    (build,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    w = build["with"]
    assert w["file"] == "image/Dockerfile" and w["push"] is True
    assert set(w["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert "VARIANT=${{ matrix.variant }}" in w["build-args"]
    assert w["tags"] == "${{ needs.version.outputs.image }}:${{ needs.version.outputs.version }}-${{ matrix.variant }}"
    version_script = wf["jobs"]["version"]["steps"][1]["run"]
    assert 'image=ghcr.io/$owner/kuberay-mnist' in version_script
    # The charts' defaults name exactly what a release of their appVersion pushes
    # (owner kuberay-mnist: the repository the Dockerfile's source label names).
    dockerfile = (ROOT / "image" / "Dockerfile").read_text()
    owner = re.search(r'image.source="https://github.com/([^/]+)/', dockerfile).group(1)
    for chart in (RAYJOB, PLATFORM):
        app = str(load_yaml(chart / "Chart.yaml")["appVersion"])
        values = load_yaml(chart / "values.yaml")
        assert values["image"]["repository"] == f"ghcr.io/{owner}/kuberay-mnist"
        assert values["image"]["tag"] == f"{app}-cpu", f"{chart.name}: the head/MLflow image is the CPU variant"
    assert load_yaml(RAYJOB / "values.yaml")["ray"]["workers"]["image"]["tag"] == f"{app}-gpu"


CHECKOV_CONFIG = ROOT / "charts" / ".checkov.yaml"  # every profile
CHECKOV_DEV_CONFIG = ROOT / "charts" / ".checkov-dev.yaml"  # the kind/dev renders only


def checkov_skips(config=CHECKOV_CONFIG) -> list[str]:
    return yaml.safe_load(config.read_text()).get("skip-check", [])


def skip_rows() -> dict[str, tuple[str, str]]:
    """check -> (scope, why) from the README's table."""
    readme = (ROOT / "charts" / "README.md").read_text()
    section = readme.split("## checkov skips", 1)
    assert len(section) == 2, "charts/README.md needs a '## checkov skips' section"
    rows = re.findall(r"^\|\s*(CKV\w+)\s*\|([^|]+)\|([^|]+)\|([^|]+)\|", section[1], re.M)
    return {check: (scope.strip(), why.strip()) for check, _title, scope, why in rows}


def test_every_checkov_skip_is_justified():
    rows = skip_rows()
    for config in (CHECKOV_CONFIG, CHECKOV_DEV_CONFIG):
        for check in checkov_skips(config):
            assert check in rows and len(rows[check][1]) > 40, f"{check} is skipped without a reason in charts/README.md"
    # Inline skips (`checkov:skip=ID:reason`) carry their reason and are listed in the README too.
    for f in [ROOT / "image" / "Dockerfile", *(ROOT / "charts").rglob("*.yaml")]:
        for check, reason in re.findall(r"checkov:skip=(CKV\w+):?(.*)", f.read_text()):
            assert len(reason.strip()) > 30, f"{f.name}: inline skip of {check} without a reason"
            assert check in rows, f"{check} is skipped in {f.name} but not listed in charts/README.md"


def test_dev_only_skips_are_scoped_to_the_dev_renders():
    """.checkov-dev.yaml = .checkov.yaml + the checks the README scopes to dev; the shared list skips none of those."""
    rows = skip_rows()
    dev_only = {c for c, (scope, _) in rows.items() if scope.startswith("dev")}
    shared = set(checkov_skips())
    assert dev_only, "the README marks no dev-only skip"
    assert not shared & dev_only, f"skipped for every profile although dev-only: {shared & dev_only}"
    assert set(checkov_skips(CHECKOV_DEV_CONFIG)) == shared | dev_only
    for check in shared:
        assert rows[check][0].startswith("all"), f"{check}: the README must say it is skipped for all profiles"


def _checkov(tools, *args, config=CHECKOV_CONFIG) -> dict:
    conf = ["--config-file", str(config)] if config else ["--skip-download"]
    proc = run([str(tools / "checkov"), *conf, "-o", "json", *args], timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    reports = data if isinstance(data, list) else [data]
    assert reports and all("summary" in r for r in reports), proc.stdout[:2000]
    return {r["check_type"]: r for r in reports}


@pytest.fixture(scope="module")
def rendered_dirs(tools, tmp_path_factory):
    """{"all": the non-dev renders, "dev": the kind/dev renders}, as `make scan` splits them."""
    out = tmp_path_factory.mktemp("rendered")
    proc = run(["bash", str(ROOT / "scripts" / "render-manifests.sh"), str(out / "rendered")])
    assert proc.returncode == 0, proc.stderr
    dirs = {"all": out / "all", "dev": out / "dev"}
    for d in dirs.values():
        d.mkdir()
    for name in ("rayjob.yaml", "rayjob-tune.yaml", "rayservice.yaml"):
        (out / "rendered" / name).rename(dirs["all"] / name)
    for name in ("platform-dev.yaml", "rayjob-cpu-kind.yaml", "rayjob-tune-cpu-kind.yaml", "rayservice-cpu-kind.yaml"):
        (out / "rendered" / name).rename(dirs["dev"] / name)
    assert not list((out / "rendered").iterdir()), "render-manifests.sh wrote a file the scan does not place"
    for name, extra in (("platform.yaml", []), ("platform-production.yaml", ["-f", str(PLATFORM / "values-production.yaml")])):
        proc = run(["bash", str(ROOT / "scripts" / "helm-template.sh"), str(PLATFORM), "mnist-platform", "mnist", *extra])
        assert proc.returncode == 0, proc.stderr
        (dirs["all"] / name).write_text(proc.stdout)
    return dirs


@pytest.mark.parametrize("scope,config", [("all", CHECKOV_CONFIG), ("dev", CHECKOV_DEV_CONFIG)], ids=["all", "dev"])
def test_checkov_kubernetes(tools, rendered_dirs, scope, config):
    report = _checkov(tools, "-d", str(rendered_dirs[scope]), "--framework", "kubernetes", config=config)["kubernetes"]
    s = report["summary"]
    assert s["resource_count"] >= 10 and s["passed"] > 100, s  # it really scanned the platform
    failed = [f"{f['check_id']} {f['resource']}" for f in report["results"]["failed_checks"]]
    assert s["failed"] == 0 and not failed, "\n".join(failed)


def test_production_renders_pass_the_dev_only_checks(tools, rendered_dirs):
    """What only the dev renders may skip is enforced on every other profile: scanning those with the dev-only
    checks alone finds no failure (and they are really checked there)."""
    dev_only = set(checkov_skips(CHECKOV_DEV_CONFIG)) - set(checkov_skips())
    report = _checkov(tools, "-d", str(rendered_dirs["all"]), "--framework", "kubernetes", "--check", ",".join(sorted(dev_only)),
                      config=None)["kubernetes"]
    assert report["summary"]["passed"] >= 3 and report["summary"]["failed"] == 0, report["summary"]


def test_checkov_dockerfile(tools):
    report = _checkov(tools, "-f", str(ROOT / "image" / "Dockerfile"), "--framework", "dockerfile")["dockerfile"]
    failed = [f"{f['check_id']} {f['check_name']}" for f in report["results"]["failed_checks"]]
    assert report["summary"]["passed"] > 10 and not failed, "\n".join(failed)


def test_checkov_can_fail(tools, tmp_path):
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: mnist}\n"
        "spec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    securityContext: {privileged: true}\n"
    )
    report = _checkov(tools, "-d", str(tmp_path), "--framework", "kubernetes")["kubernetes"]
    assert report["summary"]["failed"] > 0
