"""Reading deploy/kubernetes/ for the tests: the files, the kustomization rendered by kubectl or kustomize, and
kubernetes-validate run on them. Objects are keyed by (kind, name), whichever way they were read.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = K8S / "kustomization.yaml"
HTTPS = K8S / "https"
# Files beside the manifests that the kustomization must not apply: the documented example, and the user's own
# filled-in copy of it (ignored by git).
NOT_APPLIED = {"secret.example.yaml", "secret.yaml"}
# The HTTPS component is off until the user uncomments these lines of kustomization.yaml.
COMPONENT_OFF = "# components:\n#   - https\n"
COMPONENT_ON = "components:\n  - https\n"

Objects = dict[tuple[str, str], dict]


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomization() -> dict:
    return yaml.safe_load(KUSTOMIZATION.read_text())


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest in deploy/kubernetes/ (not the kustomization, not the user's secret.yaml)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name not in {"kustomization.yaml", "secret.yaml"})


def by_key(objects: list[dict]) -> Objects:
    out: Objects = {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in out, f"{key} defined twice"
        out[key] = obj
    return out


def from_files() -> Objects:
    """The objects of the files the kustomization lists, as written."""
    return by_key([d for name in kustomization()["resources"] for d in docs((K8S / name).read_text())])


def renderer() -> list[str] | None:
    """`kubectl kustomize` or `kustomize build`, whichever is installed."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def render(directory: Path) -> str:
    command = renderer()
    assert command, "no kubectl or kustomize"
    proc = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def with_https(tmp_path: Path) -> Path:
    """A copy of deploy/kubernetes with the `https` component switched on the way the user does it."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secret.yaml"))
    text = (copy / "kustomization.yaml").read_text()
    assert COMPONENT_OFF in text, "kustomization.yaml no longer has the commented `components: [https]` lines"
    (copy / "kustomization.yaml").write_text(text.replace(COMPONENT_OFF, COMPONENT_ON))
    return copy


def validate(paths: list[Path], version: str | None = None) -> subprocess.CompletedProcess:
    """`kubernetes-validate --strict` (schemas bundled with the package: no network)."""
    tool = Path(sys.executable).parent / "kubernetes-validate"
    command = [str(tool) if tool.exists() else "kubernetes-validate", "--strict"]
    if version:
        command += ["--kubernetes-version", version]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, timeout=300)


# --- shapes of the objects -----------------------------------------------------------------------------------

def pod(objs: Objects, name: str) -> dict:
    return objs[("Deployment", name)]["spec"]["template"]["spec"]


def container(objs: Objects, name: str) -> dict:
    containers = pod(objs, name)["containers"]
    assert [c["name"] for c in containers] == [name], f"{name}: one container, named {name}"
    return containers[0]


def env(objs: Objects, name: str) -> dict[str, dict]:
    return {e["name"]: e for e in container(objs, name).get("env", [])}


def secret_refs(objs: Objects, name: str) -> dict[str, dict]:
    """Variable -> its secretKeyRef, for every variable the container takes from a Secret."""
    return {var: e["valueFrom"]["secretKeyRef"] for var, e in env(objs, name).items()
            if "secretKeyRef" in e.get("valueFrom", {})}


def port(objs: Objects, name: str, port_name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container(objs, name).get("ports", [])}
    assert port_name in ports, f"{name} has no port named {port_name}"
    return ports[port_name]


def config(objs: Objects) -> dict[str, str]:
    return objs[("ConfigMap", "els-config")]["data"]


def effective_security(objs: Objects, name: str) -> dict:
    """The container's securityContext over the pod's (the container's own fields win, as in the kubelet)."""
    pod_level = {k: v for k, v in (pod(objs, name).get("securityContext") or {}).items()
                 if k in {"runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"}}
    return {**pod_level, **(container(objs, name).get("securityContext") or {})}


def mounts(objs: Objects, name: str) -> dict[str, dict]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in pod(objs, name).get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container(objs, name).get("volumeMounts", [])}
