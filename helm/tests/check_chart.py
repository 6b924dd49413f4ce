#!/usr/bin/env python3
"""Checks of the Sluice Helm chart without a Kubernetes cluster.

Every check renders the chart with helm (lint, template), and asserts on the rendered YAML:
Kubernetes OpenAPI schemas (kubernetes-validate, strict), the seed list, the
PodDisruptionBudget arithmetic, probes, hooks, security contexts, Secrets, the
ServiceMonitor and values.schema.json's rejections.

A check that cannot fail proves nothing: `--negative-controls` copies the chart, breaks it
in one place per control (a seed list that follows replicaCount, a liveness probe tied to
quorum, ...), and requires the check aimed at it to fail.

Usage: check_chart.py --helm PATH [--negative-controls]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Callable

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sluice"
VALUE_SETS = ROOT / "helm" / "tests" / "values"
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest one
# kubernetes-validate bundles schemas for.
KUBE_VERSIONS = ["1.27.0", "1.37.0"]
RELEASE = "sl"
NAMESPACE = "data"
READINESS_SERVICE = "sluice.admin.v1.Admin"


class CheckFailed(Exception):
    pass


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Chart:
    """Renders one chart directory with helm."""

    def __init__(self, helm: str, path: Path):
        self.helm = helm
        self.path = path
        self.cache: dict[tuple, list[dict]] = {}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.helm, *args], capture_output=True, text=True, check=False
        )

    def template_args(self, values_files=(), sets=()) -> list[str]:
        args = [
            "template", RELEASE, str(self.path), "--namespace", NAMESPACE,
            "--kube-version", KUBE_VERSIONS[-1],
        ]
        for f in values_files:
            args += ["-f", str(f)]
        for s in sets:
            args += ["--set", s]
        return args

    def render(self, values_files=(), sets=()) -> list[dict]:
        key = (tuple(map(str, values_files)), tuple(sets))
        if key not in self.cache:
            out = self.run(*self.template_args(values_files, sets))
            if out.returncode != 0:
                raise CheckFailed(f"helm template {' '.join(sets)} failed: {out.stderr.strip()}")
            self.cache[key] = [d for d in yaml.safe_load_all(out.stdout) if d]
        return self.cache[key]

    def render_error(self, values_files=(), sets=()) -> str:
        """Renders values that must be refused; returns helm's message."""
        out = self.run(*self.template_args(values_files, sets))
        ensure(out.returncode != 0, f"helm template accepted {list(sets)} {list(map(str, values_files))}")
        return out.stderr


def find(docs: list[dict], kind: str, name_suffix: str = "") -> list[dict]:
    return [
        d for d in docs
        if d.get("kind") == kind and d["metadata"]["name"].endswith(name_suffix)
    ]


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = find(docs, kind, name_suffix)
    ensure(len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}")
    return found[0]


def statefulset(docs):
    return one(docs, "StatefulSet")


def node_container(docs) -> dict:
    return statefulset(docs)["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def node_toml(docs) -> dict:
    return tomllib.loads(one(docs, "ConfigMap")["data"]["sluice.toml"])


def hook(doc: dict) -> tuple[set[str], set[str]]:
    annotations = doc["metadata"].get("annotations", {})
    split = lambda v: {p.strip() for p in v.split(",") if p.strip()}  # noqa: E731
    return split(annotations.get("helm.sh/hook", "")), split(
        annotations.get("helm.sh/hook-delete-policy", "")
    )


def flag(args: list[str], name: str) -> str:
    ensure(name in args, f"{name} missing from {args}")
    i = args.index(name)
    ensure(i + 1 < len(args), f"{name} has no value in {args}")
    return args[i + 1]


def fqdn(pod: str) -> str:
    return f"{pod}.{RELEASE}-sluice-headless.{NAMESPACE}.svc.cluster.local"


def value_sets() -> list[Path]:
    return sorted(VALUE_SETS.glob("*.yaml"))


def all_renders(chart: Chart):
    """The default values and every value set, with a label."""
    yield "default", chart.render()
    for f in value_sets():
        yield f.stem, chart.render(values_files=[f])


def pod_specs(docs) -> list[tuple[str, dict]]:
    """Every pod spec a render can create: the StatefulSet's, the hook Jobs', the test Pod's."""
    specs = []
    for d in docs:
        if d["kind"] == "StatefulSet" or d["kind"] == "Job":
            specs.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            specs.append((f"Pod/{d['metadata']['name']}", d["spec"]))
    return specs


# ------------------------------------------------------------------------------ checks ---

def check_lint(chart: Chart):
    for files in [[]] + [[f] for f in value_sets()]:
        args = ["lint", str(chart.path), "--strict", "--kube-version", KUBE_VERSIONS[-1]]
        for f in files:
            args += ["-f", str(f)]
        out = chart.run(*args)
        ensure(out.returncode == 0, f"helm lint {files}: {out.stdout}{out.stderr}")


def check_notes(chart: Chart):
    """NOTES.txt renders (helm template skips it): a copy of the chart wraps it in an object."""
    work = Path(tempfile.mkdtemp(prefix="sluice-chart-notes.", dir=_scratch))
    copy = work / "sluice"
    shutil.copytree(chart.path, copy)
    notes = (copy / "templates" / "NOTES.txt").read_text()
    (copy / "templates" / "_notes_check.tpl").write_text('{{- define "notes.check" -}}\n' + notes + "\n{{- end -}}\n")
    (copy / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  text: {{ include "notes.check" . | toJson }}\n'
    )
    wrapped = Chart(chart.helm, copy)
    for files, words in [
        ([], ["do not pass --wait", "rollout status statefulset/sl-sluice", "helm test sl"]),
        ([VALUE_SETS / "one-node.yaml"], ["one node has no fault tolerance"]),
        ([VALUE_SETS / "metrics.yaml"], ["GET /metrics on port 9464"]),
    ]:
        text = one(wrapped.render(values_files=files), "ConfigMap", "notes")["data"]["text"]
        missing = [w for w in words if w not in text]
        ensure(not missing, f"NOTES.txt with {[f.name for f in files]} does not say {missing}: {text}")


def check_kubernetes_schemas(chart: Chart):
    validated = 0
    for label, docs in all_renders(chart):
        for doc in docs:
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # a CRD: no bundled schema; check_service_monitor covers it
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except Exception as e:  # noqa: BLE001 - report any validation problem
                    raise CheckFailed(
                        f"{label}: {doc['kind']}/{doc['metadata']['name']} is not valid "
                        f"Kubernetes {version}: {getattr(e, 'message', e)}"
                    ) from e
                validated += 1
    ensure(validated > 0, "nothing was validated")


def check_config_keys_match_the_node(chart: Chart):
    """Every key of sluice.toml is one `sluice node` reads (its FileConfig struct)."""
    source = (ROOT / "node" / "src" / "config.rs").read_text()
    match = re.search(r"struct FileConfig \{(.*?)\n\}", source, re.S)
    ensure(match is not None, "struct FileConfig not found in node/src/config.rs")
    known = set(re.findall(r"^\s*(\w+):", match.group(1), re.M))
    for label, docs in all_renders(chart):
        config = node_toml(docs)
        unknown = set(config) - known
        ensure(not unknown, f"{label}: sluice.toml keys {unknown} are not read by sluice node ({sorted(known)})")
        container = node_container(docs)
        ensure(
            container["args"][:2] == ["node", "--config"],
            f"{label}: the node container runs {container['args']}",
        )
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        ensure(
            container["args"][2] == f"{mounts['config']}/sluice.toml",
            f"{label}: --config {container['args'][2]} is not in the config mount {mounts['config']}",
        )
        ensure(
            config["data_dir"] == mounts["data"],
            f"{label}: data_dir {config['data_dir']} is not the data volume's {mounts['data']}",
        )


def check_seed_list_does_not_follow_replicas(chart: Chart):
    seeds = [fqdn(f"{RELEASE}-sluice-{k}") + ":7070" for k in range(3)]
    renders = {n: chart.render(sets=[f"replicaCount={n}"]) for n in (1, 3, 5)}
    for n, docs in renders.items():
        ensure(statefulset(docs)["spec"]["replicas"] == n, f"replicas {n} not rendered")
        ensure(node_toml(docs)["peers"] == seeds, f"replicaCount={n}: peers {node_toml(docs)['peers']} != {seeds}")
    # Scaling changes the replica count and nothing a pod runs with, so no pod restarts.
    template3 = statefulset(renders[3])["spec"]["template"]
    template5 = statefulset(renders[5])["spec"]["template"]
    ensure(template3 == template5, "the pod template differs between 3 and 5 replicas: scaling would restart every pod")
    ensure(one(renders[3], "ConfigMap") == one(renders[5], "ConfigMap"), "the ConfigMap differs between 3 and 5 replicas")


def check_identity_and_discovery(chart: Chart):
    docs = chart.render()
    sts = statefulset(docs)
    ensure(sts["spec"]["podManagementPolicy"] == "Parallel", "podManagementPolicy is not Parallel")
    headless = one(docs, "Service", "-headless")
    ensure(sts["spec"]["serviceName"] == headless["metadata"]["name"], "serviceName is not the headless Service")
    ensure(headless["spec"].get("clusterIP") == "None", "the peer Service is not headless")
    ensure(headless["spec"].get("publishNotReadyAddresses") is True, "the headless Service does not publish not-ready addresses")
    env = env_of(node_container(docs))
    ensure(
        env["SLUICE_NODE_ID"].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
        "SLUICE_NODE_ID is not the pod name",
    )
    ensure(
        env["SLUICE_ADVERTISE_ADDR"]["value"] == "$(SLUICE_NODE_ID)." + fqdn("")[1:] + ":7070",
        f"SLUICE_ADVERTISE_ADDR is {env['SLUICE_ADVERTISE_ADDR']}",
    )
    claims = sts["spec"].get("volumeClaimTemplates", [])
    ensure([c["metadata"]["name"] for c in claims] == ["data"], "no PVC template named data")
    ensure(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete", "PVCs of removed members are kept on scale-down")
    client = one(docs, "Service", "sluice")
    ensure(client["spec"].get("clusterIP") != "None", "the client Service is headless")
    ensure(
        [p["targetPort"] for p in client["spec"]["ports"]] == ["grpc"]
        and node_container(docs)["ports"][0]["name"] == "grpc",
        "the client Service does not target the grpc port",
    )


def check_pdb_arithmetic(chart: Chart):
    for n, expected in [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (7, 3)]:
        pdb = one(chart.render(sets=[f"replicaCount={n}"]), "PodDisruptionBudget")
        got = pdb["spec"].get("maxUnavailable")
        ensure(got == expected, f"replicaCount={n}: maxUnavailable {got}, want floor(({n}-1)/2)={expected}")
        ensure("minAvailable" not in pdb["spec"], "the PDB sets minAvailable too")
    for n, asked in [(3, 1), (5, 1), (5, 2), (3, 0)]:
        pdb = one(chart.render(sets=[f"replicaCount={n}", f"podDisruptionBudget.maxUnavailable={asked}"]), "PodDisruptionBudget")
        ensure(pdb["spec"]["maxUnavailable"] == asked, f"a safe override {asked} of {n} was changed")
    for n, asked in [(3, 2), (5, 3), (1, 1), (4, 2)]:
        message = chart.render_error(sets=[f"replicaCount={n}", f"podDisruptionBudget.maxUnavailable={asked}"])
        ensure(
            f"podDisruptionBudget.maxUnavailable={asked} is unsafe for replicaCount={n}" in message,
            f"unsafe maxUnavailable={asked} for {n} nodes failed without the expected message: {message}",
        )


def check_probes(chart: Chart):
    proto = (ROOT / "proto" / "admin.proto").read_text()
    package = re.search(r"^package ([\w.]+);", proto, re.M)
    ensure(package is not None and re.search(r"^service Admin \{", proto, re.M) is not None, "admin.proto has no Admin service")
    ensure(f"{package.group(1)}.Admin" == READINESS_SERVICE, f"the Admin service is {package.group(1)}.Admin")
    for label, docs in all_renders(chart):
        container = node_container(docs)
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        expected = {"startupProbe": "", "livenessProbe": "", "readinessProbe": READINESS_SERVICE}
        for probe, service in expected.items():
            spec = container.get(probe)
            ensure(spec is not None, f"{label}: no {probe}")
            ensure(set(spec) & {"httpGet", "exec", "tcpSocket"} == set(), f"{label}: {probe} is not a gRPC probe")
            grpc = spec.get("grpc", {})
            ensure(grpc.get("port") == port, f"{label}: {probe} port {grpc.get('port')} != {port}")
            ensure(grpc.get("service", "") == service, f"{label}: {probe} asks for service {grpc.get('service')!r}, want {service!r}")
        startup = container["startupProbe"]
        ensure(startup["periodSeconds"] * startup["failureThreshold"] >= 300, "the startup probe allows less than 5 minutes for log replay")


def check_lifecycle_and_hooks(chart: Chart):
    for n in (2, 3, 5):
        docs = chart.render(sets=[f"replicaCount={n}"])
        container = node_container(docs)
        prestop = container["lifecycle"]["preStop"]["exec"]["command"]
        ensure(prestop[:2] == ["sluice", "drain"], f"preStop runs {prestop}, not `sluice drain`")
        ensure(not {"remove-node", "scale-down"} & set(prestop), f"preStop changes membership: {prestop}")
        grace = statefulset(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        ensure(int(flag(prestop, "--timeout-secs")) < grace, "the drain does not fit in the grace period")

        init = one(docs, "Job", "-init")
        hooks, delete = hook(init)
        ensure(hooks == {"post-install"}, f"the init Job's hook is {hooks}")
        ensure({"before-hook-creation", "hook-succeeded"} <= delete, f"the init Job's delete policy is {delete}")
        args = init["spec"]["template"]["spec"]["containers"][0]["args"]
        ensure(args[0] == "init", f"the init Job runs {args}")
        ensure(flag(args, "--host") == f"http://{fqdn(f'{RELEASE}-sluice-0')}:7070", f"init targets {flag(args, '--host')}, not pod 0")
        ensure(int(flag(args, "--wait-secs")) > 0, "init does not retry")

        scale = one(docs, "Job", "-scale-down")
        hooks, delete = hook(scale)
        ensure("pre-upgrade" in hooks and "pre-rollback" in hooks, f"the scale-down Job's hook is {hooks}")
        ensure({"before-hook-creation", "hook-succeeded"} <= delete, f"the scale-down Job's delete policy is {delete}")
        args = scale["spec"]["template"]["spec"]["containers"][0]["args"]
        ensure(args[0] == "remove-node", f"the scale-down Job runs {args}")
        ensure(flag(args, "--statefulset") == statefulset(docs)["metadata"]["name"], "the scale-down Job names another StatefulSet")
        ensure(flag(args, "--replicas") == str(n), f"the scale-down Job keeps {flag(args, '--replicas')} of {n}")

        test = one(docs, "Pod", "-test-status")
        hooks, delete = hook(test)
        ensure(hooks == {"test"}, f"the test Pod's hook is {hooks}")
        args = test["spec"]["containers"][0]["args"]
        client = one(docs, "Service", "sluice")["metadata"]["name"]
        ensure(args[0] == "status" and flag(args, "--host") == f"http://{client}.{NAMESPACE}.svc.cluster.local:7070", f"the test Pod runs {args}")
        for _, spec in pod_specs(docs):
            if spec is not statefulset(docs)["spec"]["template"]["spec"]:
                ensure(spec["restartPolicy"] == "Never", "a hook pod restarts in place")
    ensure(not find(chart.render(sets=["hooks.scaleDown.enabled=false"]), "Job", "-scale-down"), "hooks.scaleDown.enabled=false still renders the Job")


def check_security_context(chart: Chart):
    for label, docs in all_renders(chart):
        sa = one(docs, "ServiceAccount")
        for where, spec in pod_specs(docs):
            ensure(spec.get("serviceAccountName") == sa["metadata"]["name"], f"{label} {where}: not on the chart's ServiceAccount")
            ensure(spec.get("automountServiceAccountToken") is False, f"{label} {where}: mounts an API token")
            # Service links would put SLUICE_SERVICE_HOST, SLUICE_PORT... (from a Service named
            # like the release) into the environment `sluice` reads SLUICE_* settings from.
            ensure(spec.get("enableServiceLinks") is False, f"{label} {where}: service links inject SLUICE_* variables")
            pod = spec.get("securityContext", {})
            ensure(pod.get("runAsNonRoot") is True, f"{label} {where}: runAsNonRoot is not set")
            ensure(pod.get("runAsUser", 0) > 0 and pod.get("fsGroup", 0) > 0, f"{label} {where}: no non-root uid or fsGroup")
            ensure(pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label} {where}: no RuntimeDefault seccomp")
            for c in spec["containers"]:
                sc = c.get("securityContext", {})
                ensure(sc.get("readOnlyRootFilesystem") is True, f"{label} {where}/{c['name']}: root filesystem writable")
                ensure(sc.get("allowPrivilegeEscalation") is False, f"{label} {where}/{c['name']}: privilege escalation allowed")
                ensure(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{label} {where}/{c['name']}: capabilities not dropped")
                ensure(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) > 0, f"{label} {where}/{c['name']}: may run as root")
                ensure(sc.get("privileged") is not True, f"{label} {where}/{c['name']}: privileged")
                ensure(c.get("resources", {}).get("requests") and c["resources"].get("limits", {}).get("memory"), f"{label} {where}/{c['name']}: no resources")
        # Every path the node writes is a volume (the root filesystem is read-only).
        container = node_container(docs)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        ensure("/tmp" in mounts and node_toml(docs)["data_dir"] in mounts, f"{label}: /tmp or the data dir is not a volume")
        ensure(mounts[[m for m in mounts if m.endswith("/config")][0]].get("readOnly") is True, f"{label}: the config is mounted writable")


SECRET_WORDS = re.compile(r"password|passwd|secret|token|credential|username", re.I)


def check_no_secret_values_inline(chart: Chart):
    for label, docs in all_renders(chart):
        ensure(not find(docs, "Secret"), f"{label}: the chart renders a Secret")
        for where, spec in pod_specs(docs):
            for c in spec["containers"]:
                for e in c.get("env", []):
                    if SECRET_WORDS.search(e["name"]):
                        ensure("value" not in e and "secretKeyRef" in e.get("valueFrom", {}), f"{label} {where}: {e['name']} is not from a Secret")
        config = node_toml(docs)
        keys = list(config) + list(config.get("kafka", {}))
        ensure(not [k for k in keys if re.search(r"password|secret", k, re.I)], f"{label}: the ConfigMap holds a secret: {keys}")
    docs = chart.render(values_files=[VALUE_SETS / "sasl-external-kafka.yaml"])
    env = env_of(node_container(docs))
    for var, key in [("SLUICE_RDKAFKA_SASL_USERNAME", "username"), ("SLUICE_RDKAFKA_SASL_PASSWORD", "password")]:
        ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
        ensure(ref == {"name": "kafka-sasl", "key": key}, f"{var} is {env.get(var)}")
    tls = [v for v in statefulset(docs)["spec"]["template"]["spec"]["volumes"] if v["name"] == "kafka-tls"]
    ensure(tls and tls[0].get("secret", {}).get("secretName") == "kafka-tls", "the TLS material is not a Secret volume")
    mount = next(m for m in node_container(docs)["volumeMounts"] if m["name"] == "kafka-tls")
    kafka = node_toml(docs)["kafka"]
    ensure(kafka.get("ssl_ca_location") == f"{mount['mountPath']}/ca.crt", f"ssl_ca_location {kafka.get('ssl_ca_location')} is not in the TLS mount")
    ensure(kafka.get("security_protocol") == "SASL_SSL" and kafka.get("sasl_mechanisms") == "SCRAM-SHA-512", f"[kafka] is {kafka}")
    # A password put in the values is refused before anything renders.
    message = chart.render_error(sets=["kafka.properties.sasl_password=hunter2"])
    ensure("sasl_password" in message, f"an inline password was refused without naming it: {message}")
    message = chart.render_error(sets=["kafka.sasl.existingSecret=s"])
    ensure("kafka.properties.security_protocol" in message, f"SASL without a protocol failed with: {message}")


def check_service_monitor(chart: Chart):
    for label, docs in all_renders(chart):
        monitors = find(docs, "ServiceMonitor")
        if label == "metrics":
            ensure(len(monitors) == 1, "metrics.serviceMonitor.enabled rendered no ServiceMonitor")
            monitor = monitors[0]
            ensure(monitor["apiVersion"] == "monitoring.coreos.com/v1", "wrong ServiceMonitor apiVersion")
            ensure(monitor["metadata"]["labels"].get("release") == "prometheus", "the ServiceMonitor's extra labels are missing")
            client = one(docs, "Service", "sluice")
            ensure(
                monitor["spec"]["selector"]["matchLabels"].items() <= client["metadata"]["labels"].items(),
                "the ServiceMonitor does not select the client Service",
            )
            ports = {p["name"] for p in client["spec"]["ports"]}
            ensure(all(e["port"] in ports for e in monitor["spec"]["endpoints"]), "the ServiceMonitor scrapes a port the Service lacks")
            ports = {p["name"]: p["containerPort"] for p in node_container(docs)["ports"]}
            ensure("metrics" in ports, "the pods have no metrics port")
            # The node serves what the port promises: its config binds the metrics endpoint there.
            config = tomllib.loads(one(docs, "ConfigMap", "sluice")["data"]["sluice.toml"])
            ensure(config.get("metrics_addr", "").endswith(f":{ports['metrics']}"),
                   f"the node config's metrics_addr {config.get('metrics_addr')!r} is not the pods' metrics port {ports['metrics']}")
        else:
            ensure(not monitors, f"{label}: a ServiceMonitor is rendered without metrics.serviceMonitor.enabled")
    message = chart.render_error(sets=["metrics.serviceMonitor.enabled=true"])
    ensure("needs metrics.enabled" in message, f"a ServiceMonitor without its port failed with: {message}")


def check_schema_rejections(chart: Chart):
    cases = [
        (["replicaCount=-1"], ["/replicaCount", "minimum"]),
        (["replicaCount=0"], ["/replicaCount", "minimum"]),
        (["nope=1"], ["additional properties 'nope' not allowed"]),
        (["persistence.sizee=1Gi"], ["additional properties 'sizee' not allowed"]),
        (["probes.liveness.grpcService=x"], ["additional properties 'grpcService' not allowed"]),
        (["podAntiAffinity=sometimes"], ["/podAntiAffinity"]),
        (["securityContext.readOnlyRootFilesytem=true"], ["additional properties 'readOnlyRootFilesytem' not allowed"]),
        (["grpc.port=70000"], ["/grpc/port", "maximum"]),
        (["node.nodeTimeoutMs=500"], ["/node/nodeTimeoutMs", "minimum"]),
    ]
    for sets, words in cases:
        message = chart.render_error(sets=sets)
        ensure("values don't meet the specifications of the schema" in message, f"{sets} was refused, but not by the schema: {message}")
        ensure(all(w in message for w in words), f"{sets}: the message does not say {words}: {message}")
        out = chart.run("lint", str(chart.path), "--kube-version", KUBE_VERSIONS[-1], *sum((["--set", s] for s in sets), []))
        ensure(out.returncode != 0, f"helm lint accepted {sets}")
    message = chart.render_error(values_files=[write_values("replicaCount: three\n")])
    ensure("/replicaCount" in message and "want integer" in message, f"a string replicaCount: {message}")
    message = chart.render_error(sets=["drain.timeoutSeconds=90"])
    ensure("must be shorter than terminationGracePeriodSeconds" in message, f"a drain longer than the grace period: {message}")


_scratch = Path(tempfile.mkdtemp(prefix="sluice-chart-check."))


def write_values(text: str) -> Path:
    path = _scratch / f"values-{len(list(_scratch.iterdir()))}.yaml"
    path.write_text(text)
    return path


CHECKS: list[tuple[str, Callable[[Chart], None]]] = [
    ("helm lint (default and every value set)", check_lint),
    ("NOTES.txt renders and says what matters", check_notes),
    ("Kubernetes schemas, strict (every rendered object)", check_kubernetes_schemas),
    ("sluice.toml keys and paths match sluice node", check_config_keys_match_the_node),
    ("seed list and pod template identical for 1, 3 and 5 replicas", check_seed_list_does_not_follow_replicas),
    ("stable identities and peer discovery", check_identity_and_discovery),
    ("PodDisruptionBudget: floor((n-1)/2), unsafe values fail", check_pdb_arithmetic),
    ("probes: gRPC health, liveness without quorum, readiness with", check_probes),
    ("preStop drains only; hook Jobs and the test Pod", check_lifecycle_and_hooks),
    ("security contexts, service account, resources", check_security_context),
    ("no secret values inline; SASL and TLS from Secrets", check_no_secret_values_inline),
    ("ServiceMonitor only when enabled", check_service_monitor),
    ("values.schema.json rejects bad values with a clear message", check_schema_rejections),
]

# Each control breaks the chart in one place; the named check must then fail.
NEGATIVE_CONTROLS = [
    ("seed list follows replicaCount", "templates/_helpers.tpl",
     "range $i := until (int .Values.seeds)", "range $i := until (int .Values.replicaCount)",
     check_seed_list_does_not_follow_replicas),
    ("PDB allows a majority down", "templates/_helpers.tpl",
     "$safe := div (sub $n 1) 2", "$safe := div $n 2", check_pdb_arithmetic),
    ("liveness tied to quorum", "templates/statefulset.yaml",
     "          livenessProbe:\n            grpc:\n              port: {{ .Values.grpc.port }}\n              service: \"\"",
     "          livenessProbe:\n            grpc:\n              port: {{ .Values.grpc.port }}\n              service: sluice.admin.v1.Admin",
     check_probes),
    ("preStop removes the member", "templates/statefulset.yaml",
     "                  - sluice\n                  - drain", "                  - sluice\n                  - remove-node",
     check_lifecycle_and_hooks),
    ("scale-down Job on post-upgrade", "templates/job-scale-down.yaml",
     "helm.sh/hook: pre-upgrade,pre-rollback", "helm.sh/hook: post-upgrade", check_lifecycle_and_hooks),
    ("root filesystem writable", "values.yaml",
     "  readOnlyRootFilesystem: true", "  readOnlyRootFilesystem: false", check_security_context),
    ("password from a plain value", "templates/statefulset.yaml",
     "            - name: SLUICE_RDKAFKA_SASL_PASSWORD\n              valueFrom:\n                secretKeyRef:\n                  name: {{ .existingSecret }}\n                  key: {{ .passwordKey }}",
     "            - name: SLUICE_RDKAFKA_SASL_PASSWORD\n              value: {{ .passwordKey | quote }}",
     check_no_secret_values_inline),
    ("ServiceMonitor always rendered", "templates/servicemonitor.yaml",
     "{{- if .Values.metrics.serviceMonitor.enabled }}", "{{- if true }}", check_service_monitor),
    ("schema accepts unknown keys", "values.schema.json",
     '"title": "Values of the Sluice chart",\n  "type": "object",\n  "additionalProperties": false,',
     '"title": "Values of the Sluice chart",\n  "type": "object",\n  "additionalProperties": true,',
     check_schema_rejections),
    ("invalid Kubernetes field", "templates/service-headless.yaml",
     "  publishNotReadyAddresses: true", "  publishNotReadyAddresses: true\n  publishNotReady: true",
     check_kubernetes_schemas),
    ("pod not Parallel", "templates/statefulset.yaml",
     "podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady", check_identity_and_discovery),
    ("config key the node does not read", "templates/configmap.yaml",
     "    log = {{ .Values.node.log | quote }}", "    log_level = {{ .Values.node.log | quote }}",
     check_config_keys_match_the_node),
]


def run_checks(chart: Chart, checks) -> tuple[int, int]:
    passed = failed = 0
    for name, check in checks:
        try:
            check(chart)
        except CheckFailed as e:
            failed += 1
            print(f"FAIL  {name}: {e}")
        else:
            passed += 1
            print(f"ok    {name}")
    return passed, failed


def run_negative_controls(helm: str) -> tuple[int, int]:
    passed = failed = 0
    for name, file, old, new, check in NEGATIVE_CONTROLS:
        work = Path(tempfile.mkdtemp(prefix="sluice-chart-broken.", dir=_scratch))
        broken = work / "sluice"
        shutil.copytree(CHART, broken)
        path = broken / file
        text = path.read_text()
        if text.count(old) != 1:
            failed += 1
            print(f"FAIL  negative control '{name}': '{old[:60]}' is not in {file} exactly once")
            continue
        path.write_text(text.replace(old, new))
        try:
            check(Chart(helm, broken))
        except CheckFailed as e:
            passed += 1
            print(f"ok    negative control '{name}' fails {check.__name__}: {str(e)[:160]}")
        else:
            failed += 1
            print(f"FAIL  negative control '{name}': {check.__name__} still passes on the broken chart")
    return passed, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--helm", required=True)
    parser.add_argument("--negative-controls", action="store_true")
    args = parser.parse_args()
    try:
        passed, failed = run_checks(Chart(args.helm, CHART), CHECKS)
        if args.negative_controls:
            p, f = run_negative_controls(args.helm)
            passed, failed = passed + p, failed + f
    finally:
        shutil.rmtree(_scratch, ignore_errors=True)
    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
