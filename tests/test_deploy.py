"""The Kubernetes manifests in deploy/k8s render and validate offline, and keep their promises.

Rendering: the kustomizations use resources, common labels and JSON patches only; they are
rendered here with the same rules (``jsonpatch`` for the patches), and, where ``kubectl`` is
installed, the result must equal ``kubectl kustomize``'s. Validation: every object against the
Kubernetes 1.37 schemas, strictly (unknown fields refused), with ``kubernetes-validate``. Then
what the deployment promises: non-root, read-only root, probes on /healthz and /readyz, API
keys from a Secret, a grace period longer than the service's drain, an autoscaler on sessions
per pod, a disruption budget, websocket timeouts at the ingress, and the GPU variant's GPU."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from voice.config import ServiceConfig

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects a kustomization makes (the subset of kustomize these files use)."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - {"apiVersion", "kind", "namespace", "labels", "resources", "patches"}
    assert not unknown, f"{folder}: kustomize features this renderer does not know: {unknown}"
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = folder / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    if "namespace" in spec:
        for item in objects:
            if item["kind"] != "Namespace":
                item.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for label in spec.get("labels", []):
        for item in objects:
            item.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
            if label.get("includeSelectors"):
                _add_selector_labels(item, label["pairs"])
    for patch in spec.get("patches", []):
        target = patch["target"]
        for index, item in enumerate(objects):
            if item["kind"] == target["kind"] and item["metadata"]["name"] == target["name"]:
                objects[index] = jsonpatch.apply_patch(item, yaml.safe_load(patch["patch"]))
    return objects


def _add_selector_labels(item: dict[str, Any], pairs: dict[str, str]) -> None:
    spec = item.get("spec", {})
    if item["kind"] == "Service":
        spec.setdefault("selector", {}).update(pairs)
    if item["kind"] == "NetworkPolicy":
        spec["podSelector"].setdefault("matchLabels", {}).update(pairs)
    if item["kind"] in ("Deployment", "PodDisruptionBudget"):
        spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
    if item["kind"] == "Deployment":
        spec["template"]["metadata"].setdefault("labels", {}).update(pairs)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["kind"]: item for item in objects}


@pytest.fixture(scope="module", params=["base", "gpu"])
def variant(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(K8S / request.param)


def test_every_object_validates_strictly_against_the_kubernetes_schemas(
        variant: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = variant
    assert sorted(item["kind"] for item in objects) == [
        "Deployment", "HorizontalPodAutoscaler", "Ingress", "Namespace", "NetworkPolicy",
        "PodDisruptionBudget", "Service"]
    assert {item["metadata"].get("namespace") for item in objects
            if item["kind"] != "Namespace"} == {"voice"}
    for item in objects:
        kubernetes_validate.validate(copy.deepcopy(item), KUBERNETES_VERSION, strict=True)


def test_kubectl_renders_the_same_objects_where_it_is_installed(
        variant: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = variant
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # reported in the summary (-ra); the render above is still checked
        pytest.skip("kubectl is not installed: the manifests were rendered by this test's "
                    "own kustomize subset only")
    rendered = subprocess.run([kubectl, "kustomize", str(K8S / name)], check=True,
                              capture_output=True, text=True, timeout=60).stdout
    theirs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    key = lambda item: (item["kind"], item["metadata"]["name"])  # noqa: E731
    assert sorted(theirs, key=key) == sorted(objects, key=key)


def test_the_pods_run_unprivileged_with_probes_and_keys_from_a_secret(
        variant: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = variant
    pod = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The keys are a mounted Secret file, never a value in the manifest or the environment.
    keys = next(e for e in container["env"] if e["name"] == "VOICE_API_KEYS_FILE")
    mount = next(m for m in container["volumeMounts"] if keys["value"].startswith(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "voice-api-keys"
    assert not any(e["name"] == "VOICE_API_KEYS" for e in container["env"])
    # Running replies finish (the service drains for shutdown_grace_s) before the kill.
    assert pod["terminationGracePeriodSeconds"] > ServiceConfig().shutdown_grace_s + 5


def test_scaling_and_disruption_follow_sessions(
        variant: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = variant
    kinds = by_kind(objects)
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "voice_sessions_active"
    assert hpa["minReplicas"] >= 2 and kinds["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
    annotations = kinds["Ingress"]["metadata"]["annotations"]
    limit = ServiceConfig().limits.max_session_s
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= limit
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= limit
    selector = kinds["Service"]["spec"]["selector"]
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    resources = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert ("nvidia.com/gpu" in resources["limits"]) == (name == "gpu")
