"""The Kubernetes manifests under deploy/ are valid for Kubernetes, and agree with the
Dockerfile and the service on user, port, probes and stop time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.settings import Settings

ROOT = Path(__file__).parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
# The oldest Kubernetes still supported upstream when this was written, and the newest the
# validator knows: the manifests must hold for both.
KUBERNETES_VERSIONS = ["1.32.0", kubernetes_validate.latest_version()]


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append(
                    (f"{path.name}:{document['kind']}/{document['metadata']['name']}", document)
                )
    return found


def tarmac_container() -> dict[str, Any]:
    [deployment] = [d for _, d in documents() if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version: str) -> None:
    found = documents()
    assert {d["kind"] for _, d in found} >= {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "StatefulSet",
        "Ingress",
    }
    for name, document in found:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} is not valid for Kubernetes {version}: {exc.message}")


def test_the_deployment_runs_the_image_as_the_dockerfile_builds_it() -> None:
    container = tarmac_container()
    [deployment] = [d for _, d in documents() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    build = dockerfile()

    uid = re.search(r"useradd .*--uid (\d+)", build)
    assert uid is not None
    assert pod["securityContext"]["runAsUser"] == int(uid.group(1))
    exposed = re.search(r"^EXPOSE (\d+)$", build, re.MULTILINE)
    assert exposed is not None
    [port] = container["ports"]
    assert port["containerPort"] == int(exposed.group(1))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TARMAC_PORT"] == exposed.group(1)
    cmd = re.search(r"^CMD \[(.*)\]$", build, re.MULTILINE)
    assert cmd is not None
    assert container["command"] + container["args"] == yaml.safe_load(f"[{cmd.group(1)}]")


def test_the_probes_ask_the_service_what_it_answers() -> None:
    container = tarmac_container()
    assert "/healthz" in dockerfile()  # the image's HEALTHCHECK
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_every_setting_the_deployment_sets_is_one_tarmac_reads() -> None:
    container = tarmac_container()
    [secret] = [
        d for _, d in documents() if d["kind"] == "Secret" and d["metadata"]["name"] == "tarmac"
    ]
    names = {e["name"] for e in container["env"]} | set(secret["stringData"])
    known = {f"TARMAC_{field.upper()}" for field in Settings.model_fields}
    assert names <= known, names - known
