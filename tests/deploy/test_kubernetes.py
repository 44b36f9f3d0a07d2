"""deploy/kubernetes/: every manifest passes `kubernetes-validate --strict` offline, the kustomization applies
exactly the manifests beside it (rendered with kubectl or kustomize when one is installed), and the promises
of docs/running.md's "Run on Kubernetes" hold: probe paths, replicas, non-root read-only pods, secrets only by
reference, every setting in the ConfigMap, processor replicas within ELS_PARTITIONS. Each check runs on the
files as written and on the rendered kustomization; `test_checks_catch_broken_manifests` shows they bite.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from common.config import BY_ENV, SETTINGS
from tests.helpers.k8s_manifests import (
    COMPONENT_OFF,
    HTTPS,
    K8S,
    NOT_APPLIED,
    ROOT,
    Objects,
    by_key,
    config,
    container,
    docs,
    effective_security,
    env,
    from_files,
    kustomization,
    manifest_files,
    mounts,
    pod,
    port,
    render,
    renderer,
    secret_refs,
    validate,
    with_https,
)

KAFKA_CREDENTIALS = {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
FROM_SECRET = {s.env for s in SETTINGS if s.secret} | KAFKA_CREDENTIALS
ONE_OFF = {"DD_APP_KEY", "ELS_KAFKA_CACHE"}  # one-off commands: `els datadog install` (no pod gets the key), `els kafka`
SECRET = "els-secrets"
INGEST_SHUTDOWN = int(re.search(r"shutdown_timeout=(\d+)", (ROOT / "ingest" / "app.py").read_text()).group(1))
COMPOSE_GRACE = int(yaml.safe_load((ROOT / "docker-compose.yml").read_text())
                    ["services"]["processor"]["stop_grace_period"].rstrip("s"))
IMAGE_UID = int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))


@pytest.fixture(scope="module", params=["files", "rendered"])
def objs(request) -> Objects:
    """The objects as written in the listed files, or as `kubectl kustomize` renders them."""
    if request.param == "files":
        return from_files()
    if not renderer():
        pytest.skip("neither kubectl nor kustomize is installed: only the files as written are checked")
    return by_key(docs(render(K8S)))


def _probe(c: dict, kind: str) -> dict:
    return c[kind]["httpGet"]


def check_ingest(objs: Objects) -> None:
    deployment, c, spec = objs[("Deployment", "ingest")], container(objs, "ingest"), pod(objs, "ingest")
    assert deployment["spec"]["replicas"] == 2
    assert (c["command"], c["args"]) == (["els"], ["ingest"])
    assert port(objs, "ingest", "http") == int(config(objs)["ELS_INGEST_PORT"])
    assert _probe(c, "readinessProbe")["path"] == "/readyz" and _probe(c, "readinessProbe")["port"] == "http"
    assert _probe(c, "livenessProbe")["path"] == "/healthz" and _probe(c, "livenessProbe")["port"] == "http"
    sleep, seconds = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep" and int(seconds) >= 3, "the Service must stop sending before the server stops"
    assert spec["terminationGracePeriodSeconds"] > int(seconds) + INGEST_SHUTDOWN
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def check_hpa(objs: Objects) -> None:
    hpa = objs[("HorizontalPodAutoscaler", "ingest")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest"}
    assert hpa["spec"]["minReplicas"] == objs[("Deployment", "ingest")]["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert "cpu" in container(objs, "ingest")["resources"]["requests"], "CPU utilization needs a CPU request"


def check_processor(objs: Objects) -> None:
    c, spec = container(objs, "processor"), pod(objs, "processor")
    replicas = objs[("Deployment", "processor")]["spec"]["replicas"]
    assert 1 <= replicas <= int(config(objs)["ELS_PARTITIONS"]), "workers beyond ELS_PARTITIONS stand idle"
    assert (c["command"], c["args"]) == (["els"], ["process"])
    assert port(objs, "processor", "web") == int(config(objs)["ELS_WEB_PORT"])
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert _probe(c, kind) == {"path": "/els/stats/", "port": "web"}, kind
    assert spec["terminationGracePeriodSeconds"] >= COMPOSE_GRACE, "time to commit and leave the group"
    assert env(objs, "processor")["WEB_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def check_services(objs: Objects) -> None:
    for name, port_name in (("ingest", "http"), ("processor", "web")):
        service, deployment = objs[("Service", name)], objs[("Deployment", name)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["selector"].items() <= labels.items(), f"Service {name} selects no pod"
        [service_port] = service["spec"]["ports"]
        assert service_port["targetPort"] == port_name
        assert service_port["port"] == port(objs, name, port_name)
    assert objs[("PodDisruptionBudget", "ingest")]["spec"]["minAvailable"] == 1


def check_security(objs: Objects) -> None:
    for name in ("ingest", "processor"):
        s, spec, c = effective_security(objs, name), pod(objs, name), container(objs, name)
        assert s.get("runAsNonRoot") is True and s.get("runAsUser") == IMAGE_UID, name
        assert s.get("allowPrivilegeEscalation") is False and s.get("readOnlyRootFilesystem") is True, name
        assert s.get("capabilities") == {"drop": ["ALL"]} and not s.get("privileged"), name
        assert s.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{name} {bound}"
        assert "emptyDir" in mounts(objs, name)["/tmp"], f"{name}: /tmp writable on a read-only root"
    writable = {path for path, volume in mounts(objs, "processor").items() if "emptyDir" in volume}
    for setting in ("ELS_DATA_DIR", "ELS_DRY_RUN_FILE"):  # relative to the image's WORKDIR /app
        target = "/app/" + config(objs)[setting]
        assert any(target.startswith(path + "/") for path in writable), f"{setting} ({target}) is not writable"


def check_secrets(objs: Objects) -> None:
    refs = {name: secret_refs(objs, name) for name in ("ingest", "processor")}
    required = {"ingest": "ELS_AUTH_TOKENS", "processor": "DD_API_KEY"}
    for name, ref in refs.items():
        assert set(ref) == {required[name]} | KAFKA_CREDENTIALS, f"{name} takes {sorted(ref)} from the Secret"
        assert all(r["name"] == SECRET and r["key"] == var for var, r in ref.items()), name
        assert not ref[required[name]].get("optional"), f"{required[name]} must not be optional"
        assert all(ref[var].get("optional") is True for var in KAFKA_CREDENTIALS), name
        literal = {var for var, e in env(objs, name).items() if "value" in e}
        assert not literal & FROM_SECRET, f"{name} has a secret as a literal value"
        assert container(objs, name)["envFrom"] == [{"configMapRef": {"name": "els-config"}}]
    assert not [key for key in objs if key[0] == "Secret"], "no Secret is applied: values are never committed"
    assert not set(config(objs)) & (FROM_SECRET | ONE_OFF), "a secret in the ConfigMap"


# settings whose default suits one development broker, set for a production cluster in the ConfigMap
PRODUCTION_VALUES = {"ELS_REPLICATION_FACTOR": "3"}


def check_configmap(objs: Objects) -> None:
    data = config(objs)
    missing = {s.env for s in SETTINGS} - FROM_SECRET - ONE_OFF - set(data)
    assert not missing, f"settings missing from configmap.yaml: {sorted(missing)}"
    unknown = set(data) - set(BY_ENV)
    assert not unknown, f"configmap.yaml has keys that are no setting: {sorted(unknown)}"
    for key, value in data.items():
        assert isinstance(value, str), key
        if key in PRODUCTION_VALUES:
            assert value == PRODUCTION_VALUES[key], key
        elif key in BY_ENV and key != "KAFKA_BOOTSTRAP_SERVERS":
            assert value in ("", BY_ENV[key].default or ""), f"{key}={value!r}: not the default (docs/configuration.md)"
    assert not re.search(r"127\.0\.0\.1|localhost", data["KAFKA_BOOTSTRAP_SERVERS"]), "a pod's loopback has no Kafka"


def check_tls(objs: Objects) -> None:
    assert config(objs)["ELS_TLS_CERT_FILE"] == config(objs)["ELS_TLS_KEY_FILE"] == "", "HTTPS is opt-in"
    tls = mounts(objs, "ingest")["/etc/els/tls"]["secret"]
    assert tls["secretName"] == "els-ingest-tls" and tls["optional"] is True
    for name in ("ingest", "processor"):
        kafka = mounts(objs, name)["/etc/els/kafka-tls"]["secret"]
        assert kafka["secretName"] == "els-kafka-tls" and kafka["optional"] is True, name


def check_https_on(objs: Objects) -> None:
    """With the `https` component: ingest serves the mounted certificate and is probed over HTTPS."""
    variables = env(objs, "ingest")
    assert variables["ELS_TLS_CERT_FILE"]["value"] == "/etc/els/tls/tls.crt"  # keys of a `kubernetes.io/tls` Secret
    assert variables["ELS_TLS_KEY_FILE"]["value"] == "/etc/els/tls/tls.key"
    assert mounts(objs, "ingest")["/etc/els/tls"]["secret"]["optional"] is False
    c = container(objs, "ingest")
    assert _probe(c, "readinessProbe")["scheme"] == _probe(c, "livenessProbe")["scheme"] == "HTTPS"


CHECKS = [check_ingest, check_hpa, check_processor, check_services, check_security, check_secrets,
          check_configmap, check_tls]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_manifests_keep_their_promises(objs, check):
    check(objs)


@pytest.mark.parametrize("version", [None, "1.29.0"], ids=["newest", "1.29"])
def test_every_manifest_passes_strict_validation(version):
    files = manifest_files()
    proc = validate(files, version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = sum(len(docs(p.read_text())) for p in files)
    assert proc.stdout.count(" passed for resource ") == expected, proc.stdout  # an unknown kind only warns
    assert "WARN" not in proc.stdout + proc.stderr


def test_strict_validation_rejects_unknown_fields_and_wrong_types(tmp_path):
    text = (K8S / "ingest-deployment.yaml").read_text()
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("timeoutSeconds:", "timeoutSecond:", 1))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace("replicas: 2", 'replicas: "2"', 1))
    for path, message in ((typo, "'timeoutSecond' was unexpected"), (wrong, "is not of type 'integer'")):
        proc = validate([path])
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stdout


def test_kustomization_applies_every_manifest_and_nothing_else():
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    assert all((K8S / name).is_file() for name in listed), "a listed file is missing"
    beside = {p.name for p in manifest_files()} - NOT_APPLIED
    assert set(listed) == beside, f"not listed: {sorted(beside - set(listed))}; listed, absent: {set(listed) - beside}"
    assert not NOT_APPLIED & set(listed)
    assert COMPONENT_OFF in (K8S / "kustomization.yaml").read_text()
    component = yaml.safe_load((HTTPS / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    assert all((HTTPS / p["path"]).is_file() for p in component["patches"])
    [image] = kustomization()["images"]
    for name in ("ingest", "processor"):
        assert container(from_files(), name)["image"] == image["name"], "kustomize `images:` must match it"


def test_secret_example_is_empty_complete_and_ignored_by_git():
    [secret] = docs((K8S / "secret.example.yaml").read_text())
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", SECRET)
    assert secret["metadata"]["namespace"] == kustomization()["namespace"]
    used = {r["key"] for name in ("ingest", "processor") for r in secret_refs(from_files(), name).values()}
    assert set(secret["stringData"]) == used
    assert all(v == "" for v in secret["stringData"].values()), "the example carries no secret value"
    assert "deploy/kubernetes/secret.yaml" in (ROOT / ".gitignore").read_text().split()


def test_processor_replicas_say_their_bound():
    text = (K8S / "processor-deployment.yaml").read_text()
    before = text[:text.index("replicas:")].splitlines()[-3:]
    assert any("ELS_PARTITIONS" in line for line in before), "the comment above replicas names ELS_PARTITIONS"


def test_rendered_kustomization_passes_strict_validation(tmp_path):
    if not renderer():
        pytest.skip("neither kubectl nor kustomize is installed")
    for name, directory in (("base", K8S), ("https", with_https(tmp_path))):
        out = tmp_path / f"{name}.yaml"
        out.write_text(render(directory))
        proc = validate([out])
        assert proc.returncode == 0 and "WARN" not in proc.stdout, proc.stdout + proc.stderr
        objects = docs(out.read_text())
        assert proc.stdout.count(" passed for resource ") == len(objects)
        namespace, [image] = kustomization()["namespace"], kustomization()["images"]
        for obj in objects:
            if obj["kind"] != "Namespace":
                assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
            for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                assert c["image"] == f"{image['newName']}:{image['newTag']}"


def test_https_component_turns_on_tls_at_ingest(tmp_path):
    if not renderer():
        pytest.skip("neither kubectl nor kustomize is installed")
    objs = by_key(docs(render(with_https(tmp_path))))
    check_https_on(objs)
    for check in CHECKS:
        if check is not check_tls:
            check(objs)  # everything else unchanged


def _mutate(path: tuple, value):
    def apply(objs: Objects) -> None:
        target = objs
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def _ingest(*path):
    return ("Deployment", "ingest"), "spec", "template", "spec", "containers", 0, *path


def _processor(*path):
    return ("Deployment", "processor"), "spec", "template", "spec", "containers", 0, *path


BROKEN = {
    "processor replicas over ELS_PARTITIONS": (check_processor, (("Deployment", "processor"), "spec", "replicas"), 9),
    "readiness on /healthz": (check_ingest, _ingest("readinessProbe", "httpGet", "path"), "/healthz"),
    "one ingest replica": (check_ingest, (("Deployment", "ingest"), "spec", "replicas"), 1),
    "writable root": (check_security, _processor("securityContext", "readOnlyRootFilesystem"), False),
    "root allowed": (check_security, _ingest("securityContext", "runAsNonRoot"), False),
    "capability kept": (check_security, _ingest("securityContext", "capabilities"), {"drop": ["NET_RAW"]}),
    "Kafka password required": (check_secrets, _ingest("env", 2, "valueFrom", "secretKeyRef", "optional"), False),
    "secret in ConfigMap": (check_secrets, (("ConfigMap", "els-config"), "data", "DD_API_KEY"), "x"),
    "short processor grace": (check_processor, (("Deployment", "processor"), "spec", "template", "spec",
                                                "terminationGracePeriodSeconds"), 5),
    "non-default setting": (check_configmap, (("ConfigMap", "els-config"), "data", "ELS_WINDOW_SECONDS"), "30"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_checks_catch_broken_manifests(case):
    check, path, value = BROKEN[case]
    objs = copy.deepcopy(from_files())
    check(objs)  # the real manifests pass
    _mutate(path, value)(objs)
    with pytest.raises(AssertionError):
        check(objs)


def test_the_docs_say_how_to_run_on_kubernetes():
    running = (ROOT / "docs" / "running.md").read_text()
    section = running.split("## Run on Kubernetes", 1)[1].split("\n## ", 1)[0]
    for needle in ("kubectl apply -k deploy/kubernetes", "images:", "KAFKA_BOOTSTRAP_SERVERS", SECRET,
                   "ELS_AUTH_TOKENS", "DD_API_KEY", "KAFKA_SASL_USERNAME", "secret.example.yaml", "/els/status/",
                   "ELS_PARTITIONS", "https"):
        assert needle in section, f"docs/running.md's Run on Kubernetes does not mention {needle}"
    assert Path(K8S / "secret.example.yaml").exists()
