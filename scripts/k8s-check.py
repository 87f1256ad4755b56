#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests in k8s/.

For each target (a kustomization directory, rendered with `kubectl kustomize`,
or a YAML file or directory of YAML files, read as is):

1. schema       every core resource validates with kubernetes-validate in
                strict mode against the pinned Kubernetes version;
2. crd-schema   every custom resource validates against the openAPIV3Schema of
                its CRD, vendored under k8s/schemas/ (unknown fields refused);
3. the policy of the deployment, one rule id each:
   security-context  non-root 65532, read-only root filesystem, no privilege
                     escalation, all capabilities dropped, seccomp RuntimeDefault
   resources         CPU and memory requests and limits on every container
   image-tag         every image pinned by tag or digest, never `latest`
   service-account   a dedicated ServiceAccount, no token mounted
   probes            startup, liveness (/healthz) and readiness (/readyz)
   pdb               a PodDisruptionBudget for every Deployment
   topology-spread   spread across zones and hosts
   shutdown-timing   terminationGracePeriodSeconds covers preStop + drain + AMQP close
   network-policy    default deny; ingress only from named peers on named
                     ports; egress only to PostgreSQL, Redis, RabbitMQ and DNS
   autoscaling       HPA and KEDA objects consistent with what they scale
   no-secret-values  no Secret with data in the manifests

Usage:
  scripts/k8s-check.py                 check k8s/base and every overlay
  scripts/k8s-check.py PATH...         check these targets only

Each violation prints as `FAIL <target> <kind>/<name>: [rule] message`; the
exit status is 1 when any was found. Needs kubectl (or SPOTCHECK_KUBECTL) and
the Python packages kubernetes-validate, jsonschema and pyyaml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# The Kubernetes version the manifests are validated against. 1.30 is the
# least they need: the preStop `sleep` action (the image has no shell) is on
# by default from 1.30.
KUBERNETES_VERSION = "1.31.0"

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
SCHEMAS = K8S / "schemas"
DEFAULT_TARGETS = ["k8s/base", "k8s/overlays/dev", "k8s/overlays/prod"]
# Targets that must carry the autoscalers.
AUTOSCALED = {"k8s/overlays/prod"}

RUNTIME_ID = 65532
# Seconds the binaries allow for closing the AMQP connection after the drain.
AMQP_CLOSE_SECS = 5
DEFAULT_SHUTDOWN_GRACE_SECS = 20
EGRESS_PORTS = {5432, 6379, 5672, 53}
# Ingress each Deployment may take: port -> what may send to it.
INGRESS_PORTS = {"worker-api": {8080, 9090}, "coordinator": {9091}}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)

    def fail(self, target: str, doc: dict | None, rule: str, message: str) -> None:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}" if doc else "-"
        self.failures.append(f"FAIL {target} {what}: [{rule}] {message}")


def kubectl() -> str:
    explicit = os.environ.get("SPOTCHECK_KUBECTL")
    if explicit:
        return explicit
    found = shutil.which("kubectl")
    if found:
        return found
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    sys.exit("kubectl not found: install it (scripts/test.sh does) or set SPOTCHECK_KUBECTL")


def load_target(target: str) -> list[dict]:
    path = (REPO / target) if not Path(target).is_absolute() else Path(target)
    if path.is_dir() and (path / "kustomization.yaml").is_file():
        out = subprocess.run(
            [kubectl(), "kustomize", str(path)], capture_output=True, text=True
        )
        if out.returncode != 0:
            raise RuntimeError(f"kubectl kustomize {target} failed:\n{out.stderr}")
        text = out.stdout
    elif path.is_dir():
        text = "\n---\n".join(p.read_text() for p in sorted(path.glob("*.yaml")))
    else:
        text = path.read_text()
    return [d for d in yaml.safe_load_all(text) if d]


# ---------------------------------------------------------------- CRD schemas


def crd_documents(path: Path) -> list[dict]:
    """The CRDs of one vendored file. Helm chart templates (KEDA's chart) are
    read without their template lines, which only wrap the CRD and fill in
    metadata labels and annotations."""
    text = path.read_text()
    if "{{" in text:
        text = "\n".join(line for line in text.splitlines() if "{{" not in line)
    return [d for d in yaml.safe_load_all(text) if d]


def load_crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema, from every file under k8s/schemas."""
    schemas: dict[tuple[str, str], dict] = {}
    for path in sorted(SCHEMAS.rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            for crd in crd_documents(path):
                if crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{version['name']}", kind)] = schema
        elif path.suffix == ".json":
            # An extract: {"apiVersion", "kind", "openAPIV3Schema"}.
            extract = json.loads(path.read_text())
            schemas[(extract["apiVersion"], extract["kind"])] = extract["openAPIV3Schema"]
    return schemas


def unknown_fields(value, schema: dict, path: str) -> list[str]:
    """Fields the structural schema does not declare (the API server's strict
    field validation refuses them too). A schema marked `x-spotcheck-extract`
    lists only the vendored part of its properties: anything else is refused
    until its schema is vendored."""
    problems = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return problems
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        for key, item in value.items():
            if key in props:
                problems += unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += unknown_fields(item, schema["additionalProperties"], f"{path}.{key}")
            elif schema.get("additionalProperties") is not True:
                if schema.get("x-spotcheck-extract"):
                    problems.append(f"{path}.{key}: not in the vendored schema extract")
                else:
                    problems.append(f"{path}.{key}: unknown field")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            problems += unknown_fields(item, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return problems


def check_custom_resource(target: str, doc: dict, crds: dict, report: Report) -> None:
    schema = crds.get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        report.fail(target, doc, "crd-schema", f"no vendored CRD schema for {doc.get('apiVersion')}")
        return
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(root)"
        report.fail(target, doc, "crd-schema", f"{where}: {error.message}")
    for problem in unknown_fields(doc, schema, ""):
        report.fail(target, doc, "crd-schema", problem.lstrip("."))


def validate_schemas(target: str, docs: list[dict], crds: dict, report: Report) -> None:
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            check_custom_resource(target, doc, crds, report)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(root)"
            report.fail(target, doc, "schema", f"{where}: {e.message}")


# --------------------------------------------------------------------- policy


def pod_spec(doc: dict) -> dict:
    return doc.get("spec", {}).get("template", {}).get("spec", {}) or {}


def pod_labels(doc: dict) -> dict:
    return doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}


def namespace(doc: dict) -> str:
    return doc.get("metadata", {}).get("namespace", "")


def selects(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return False
    match = selector.get("matchLabels", {}) or {}
    if selector.get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in match.items())


def image_pinned(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image} uses the `latest` tag"
    return None


def containers(spec: dict) -> list[dict]:
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


def check_workload(target: str, doc: dict, docs: list[dict], report: Report) -> None:
    spec = pod_spec(doc)
    psc = spec.get("securityContext") or {}
    for key, want in (("runAsNonRoot", True), ("runAsUser", RUNTIME_ID), ("runAsGroup", RUNTIME_ID)):
        if psc.get(key) != want:
            report.fail(target, doc, "security-context", f"pod securityContext.{key} must be {want}")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        report.fail(target, doc, "security-context", "pod seccompProfile must be RuntimeDefault")

    if spec.get("automountServiceAccountToken") is not False:
        report.fail(target, doc, "service-account", "automountServiceAccountToken must be false")
    account = spec.get("serviceAccountName")
    if not account or account == "default":
        report.fail(target, doc, "service-account", "needs a dedicated serviceAccountName")
    else:
        sa = [d for d in docs if d.get("kind") == "ServiceAccount"
              and d["metadata"]["name"] == account and namespace(d) == namespace(doc)]
        if not sa:
            report.fail(target, doc, "service-account", f"ServiceAccount {account} is not declared")
        elif sa[0].get("automountServiceAccountToken") is not False:
            report.fail(target, doc, "service-account",
                        f"ServiceAccount {account} must set automountServiceAccountToken: false")

    for c in containers(spec):
        name = c.get("name")
        sc = c.get("securityContext")
        if not sc:
            report.fail(target, doc, "security-context", f"container {name} has no securityContext")
            sc = {}
        checks = {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_ID,
            "runAsGroup": RUNTIME_ID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
        }
        for key, want in checks.items():
            if sc and sc.get(key) != want:
                report.fail(target, doc, "security-context", f"container {name}: {key} must be {want}")
        if sc and sc.get("privileged"):
            report.fail(target, doc, "security-context", f"container {name} is privileged")
        if sc and "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            report.fail(target, doc, "security-context", f"container {name} must drop ALL capabilities")
        if sc and (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            report.fail(target, doc, "security-context", f"container {name}: seccompProfile must be RuntimeDefault")

        resources = c.get("resources") or {}
        for part in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in (resources.get(part) or {}):
                    report.fail(target, doc, "resources", f"container {name} has no {part}.{res}")

        problem = image_pinned(c.get("image", ""))
        if problem:
            report.fail(target, doc, "image-tag", f"container {name}: {problem}")

    if doc["kind"] in ("Deployment", "StatefulSet"):
        for c in spec.get("containers") or []:
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    report.fail(target, doc, "probes", f"container {c.get('name')} has no {probe}")
    if doc["kind"] == "Deployment":
        check_deployment(target, doc, docs, report)


def http_path(probe: dict | None) -> str | None:
    return ((probe or {}).get("httpGet") or {}).get("path")


def shutdown_grace(doc: dict, container: dict, docs: list[dict]) -> int:
    value = None
    for ref in container.get("envFrom") or []:
        name = (ref.get("configMapRef") or {}).get("name")
        for cm in docs:
            if cm.get("kind") == "ConfigMap" and cm["metadata"]["name"] == name \
                    and namespace(cm) == namespace(doc):
                value = (cm.get("data") or {}).get("SPOTCHECK_SHUTDOWN_GRACE_SECS", value)
    for env in container.get("env") or []:
        if env.get("name") == "SPOTCHECK_SHUTDOWN_GRACE_SECS" and "value" in env:
            value = env["value"]
    return int(value) if value is not None else DEFAULT_SHUTDOWN_GRACE_SECS


def check_deployment(target: str, doc: dict, docs: list[dict], report: Report) -> None:
    spec = pod_spec(doc)
    labels = pod_labels(doc)
    for c in spec.get("containers") or []:
        name = c.get("name")
        if not c.get("startupProbe"):
            report.fail(target, doc, "probes", f"container {name} has no startupProbe")
        if c.get("livenessProbe") and http_path(c["livenessProbe"]) != "/healthz":
            report.fail(target, doc, "probes", f"container {name}: livenessProbe must GET /healthz")
        if c.get("readinessProbe") and http_path(c["readinessProbe"]) != "/readyz":
            report.fail(target, doc, "probes", f"container {name}: readinessProbe must GET /readyz")

    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"
            and namespace(d) == namespace(doc) and selects(d["spec"].get("selector"), labels)]
    if not pdbs:
        report.fail(target, doc, "pdb", "no PodDisruptionBudget selects its pods")
    for pdb in pdbs:
        if "minAvailable" not in pdb["spec"] and "maxUnavailable" not in pdb["spec"]:
            report.fail(target, doc, "pdb", f"{pdb['metadata']['name']} sets no budget")

    keys = {t.get("topologyKey") for t in spec.get("topologySpreadConstraints") or []
            if selects(t.get("labelSelector"), labels)}
    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname"):
        if key not in keys:
            report.fail(target, doc, "topology-spread", f"no spread constraint on {key} for its pods")

    served = any(d.get("kind") == "Service" and namespace(d) == namespace(doc)
                 and d["spec"].get("selector") and selects({"matchLabels": d["spec"]["selector"]}, labels)
                 for d in docs)
    grace_period = spec.get("terminationGracePeriodSeconds", 30)
    for c in spec.get("containers") or []:
        pre_stop = (c.get("lifecycle") or {}).get("preStop") or {}
        if "exec" in pre_stop:
            report.fail(target, doc, "shutdown-timing",
                        f"container {c.get('name')}: preStop exec needs a shell the image does not have")
        pause = (pre_stop.get("sleep") or {}).get("seconds", 0)
        if served and pause < 1:
            report.fail(target, doc, "shutdown-timing",
                        f"container {c.get('name')} is behind a Service: preStop must sleep while endpoints go")
        need = pause + shutdown_grace(doc, c, docs) + AMQP_CLOSE_SECS
        if grace_period <= need:
            report.fail(target, doc, "shutdown-timing",
                        f"terminationGracePeriodSeconds {grace_period} must exceed preStop {pause} s "
                        f"+ drain {need - pause - AMQP_CLOSE_SECS} s + AMQP close {AMQP_CLOSE_SECS} s")


def check_network_policies(target: str, docs: list[dict], report: Report) -> None:
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    for ns in sorted({namespace(d) for d in deployments}):
        in_ns = [p for p in policies if namespace(p) == ns]
        deny = [p for p in in_ns if p["spec"].get("podSelector") == {}
                and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
                and not p["spec"].get("ingress") and not p["spec"].get("egress")]
        if not deny:
            report.fail(target, None, "network-policy",
                        f"namespace {ns or '(unset)'} has no default-deny policy (podSelector {{}}, Ingress and Egress, no rules)")
    for dep in deployments:
        labels = pod_labels(dep)
        name = dep["metadata"]["name"]
        applying = [p for p in policies if namespace(p) == namespace(dep)
                    and (p["spec"].get("podSelector") == {} or selects(p["spec"].get("podSelector"), labels))]
        ingress_rules = [r for p in applying if "Ingress" in (p["spec"].get("policyTypes") or [])
                         for r in p["spec"].get("ingress") or []]
        if not any("Ingress" in (p["spec"].get("policyTypes") or []) for p in applying):
            report.fail(target, dep, "network-policy", "no policy restricts its ingress")
        allowed = INGRESS_PORTS.get(name)
        for rule in ingress_rules:
            peers = rule.get("from") or []
            if not peers:
                report.fail(target, dep, "network-policy", "an ingress rule allows every source")
            for peer in peers:
                if peer.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0") or \
                        (peer.get("namespaceSelector") == {} and not peer.get("podSelector")):
                    report.fail(target, dep, "network-policy", "an ingress rule allows every namespace or address")
            ports = {p.get("port") for p in rule.get("ports") or []}
            if not ports:
                report.fail(target, dep, "network-policy", "an ingress rule allows every port")
            elif allowed is not None and not ports <= allowed:
                report.fail(target, dep, "network-policy",
                            f"ingress on ports {sorted(ports - allowed)} (allowed: {sorted(allowed)})")
        if not any("Egress" in (p["spec"].get("policyTypes") or []) for p in applying):
            report.fail(target, dep, "network-policy", "no policy restricts its egress")
        for p in applying:
            if "Egress" not in (p["spec"].get("policyTypes") or []):
                continue
            for rule in p["spec"].get("egress") or []:
                ports = {x.get("port") for x in rule.get("ports") or []}
                if not ports or not ports <= EGRESS_PORTS:
                    report.fail(target, dep, "network-policy",
                                f"{p['metadata']['name']}: egress beyond PostgreSQL, Redis, RabbitMQ and DNS ({sorted(ports) or 'any port'})")
                if 53 in ports:
                    peers = rule.get("to") or []
                    if not peers or not all((x.get("podSelector") or {}).get("matchLabels", {}).get("k8s-app") == "kube-dns"
                                            for x in peers):
                        report.fail(target, dep, "network-policy",
                                    f"{p['metadata']['name']}: DNS egress must go to kube-dns only")


def check_autoscaling(target: str, docs: list[dict], report: Report) -> None:
    deployments = {(namespace(d), d["metadata"]["name"]): d for d in docs if d.get("kind") == "Deployment"}
    hpas = [d for d in docs if d.get("kind") == "HorizontalPodAutoscaler"]
    scaled = [d for d in docs if d.get("kind") == "ScaledObject"]
    if target in AUTOSCALED:
        if not any(h["spec"]["scaleTargetRef"]["name"] == "worker-api" for h in hpas):
            report.fail(target, None, "autoscaling", "worker-api has no HorizontalPodAutoscaler")
        if not any(s["spec"]["scaleTargetRef"]["name"] == "coordinator" for s in scaled):
            report.fail(target, None, "autoscaling", "coordinator has no KEDA ScaledObject")
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        if ref.get("kind") != "Deployment" or (namespace(hpa), ref["name"]) not in deployments:
            report.fail(target, hpa, "autoscaling", f"scales {ref.get('kind')}/{ref['name']}, not a Deployment here")
        types = {m.get("type") for m in hpa["spec"].get("metrics") or []}
        if "Resource" not in types or not types & {"Pods", "Object", "External"}:
            report.fail(target, hpa, "autoscaling", "needs a CPU metric and a request-rate metric")
    names = {}
    for cm in docs:
        if cm.get("kind") == "ConfigMap":
            ns_prefix = (cm.get("data") or {}).get("SPOTCHECK_AMQP_NAMESPACE")
            if ns_prefix:
                names[namespace(cm)] = ns_prefix
    auths = {(namespace(d), d["metadata"]["name"]) for d in docs if d.get("kind") == "TriggerAuthentication"}
    for so in scaled:
        spec = so.get("spec", {})
        ref = spec.get("scaleTargetRef", {})
        if (namespace(so), ref.get("name")) not in deployments:
            report.fail(target, so, "autoscaling", f"scales {ref.get('name')}, not a Deployment here")
        for key in ("minReplicaCount", "maxReplicaCount", "cooldownPeriod"):
            if key not in spec:
                report.fail(target, so, "autoscaling", f"sets no {key}")
        prefix = names.get(namespace(so), "spotcheck")
        queues = {t.get("metadata", {}).get("queueName") for t in spec.get("triggers") or []
                  if t.get("type") == "rabbitmq"}
        for queue in (f"{prefix}.votes", f"{prefix}.ingest"):
            if queue not in queues:
                report.fail(target, so, "autoscaling", f"no rabbitmq trigger on {queue}")
        for t in spec.get("triggers") or []:
            auth = (t.get("authenticationRef") or {}).get("name")
            if auth and (namespace(so), auth) not in auths:
                report.fail(target, so, "autoscaling", f"TriggerAuthentication {auth} is not declared")


def check_policy(target: str, docs: list[dict], report: Report) -> None:
    for doc in docs:
        kind = doc.get("kind")
        if kind in WORKLOADS:
            check_workload(target, doc, docs, report)
        elif kind == "Secret" and (doc.get("data") or doc.get("stringData")):
            report.fail(target, doc, "no-secret-values", "secret values must not be committed")
        elif kind == "RabbitmqCluster" or (kind == "Cluster" and doc["apiVersion"].startswith("postgresql.cnpg.io/")):
            image = doc.get("spec", {}).get("image") or doc.get("spec", {}).get("imageName")
            problem = image_pinned(image) if image else "no image pinned"
            if problem:
                report.fail(target, doc, "image-tag", problem)
    check_network_policies(target, docs, report)
    check_autoscaling(target, docs, report)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    targets = argv or DEFAULT_TARGETS
    crds = load_crd_schemas()
    report = Report()
    for target in targets:
        try:
            docs = load_target(target)
        except (RuntimeError, OSError, yaml.YAMLError) as e:
            report.fail(target, None, "render", str(e))
            continue
        before = len(report.failures)
        validate_schemas(target, docs, crds, report)
        check_policy(target, docs, report)
        found = len(report.failures) - before
        kinds = sorted({d.get("kind") for d in docs})
        status = "ok" if not found else f"{found} problem(s)"
        print(f"{target}: {len(docs)} resources ({', '.join(kinds)}), "
              f"Kubernetes {KUBERNETES_VERSION}: {status}")
    for line in report.failures:
        print(line)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
