#!/usr/bin/env python3
"""Boots the Helm chart's rendered manifests as local processes, the way Kubernetes would.

No Kubernetes API server can run here, so this plays the parts of the StatefulSet
controller, the kubelet, the container runtime and cluster DNS, from the rendered YAML only:

- one network namespace per pod (veth into a bridge in a namespace of its own, pod IPs on
  a private subnet that exists only inside these namespaces), a hosts file with the pod
  DNS names (<pod>.<headless service>.<namespace>.svc.cluster.local) and the client
  Service's name, bind-mounted over /etc/hosts in the pod's own mount namespace;
- one PID namespace per pod, so `sluice node` is PID 1 as in a container;
- the container's command: the image's ENTRYPOINT (read from the Dockerfile) and the
  rendered args; its environment: the rendered env with fieldRef, secretKeyRef and
  $(VAR) expansion resolved as the kubelet does;
- its volumes at their rendered mount paths: the ConfigMap's files, the Secrets' files,
  an emptyDir, a PersistentVolumeClaim that outlives the pod (a directory per pod);
- its securityContext: runAsUser/runAsGroup/fsGroup, no capabilities, no_new_privs, and
  a read-only root filesystem (the pod's mount namespace remounts / read-only);
- probes with the gRPC health protocol at the rendered port and service; preStop with the
  rendered exec command inside the pod's namespaces; SIGTERM; the grace period.

The chart is rendered with its mount paths under a scratch directory (a value per path),
so the pods' files live in the scratch directory. Kafka (a real broker, scripts/kafka.sh)
runs in the bridge's namespace with a SASL_SSL (SCRAM-SHA-512) listener whose username
and password reach the pods from a Secret, and whose CA certificate is a Secret volume.

The scenario: three pods start in parallel; the post-install Job's command forms the
cluster (run twice: idempotent); readiness follows quorum; the quickstart tables are
created through the client Service and sample events are ingested from Kafka into every
replica; pod 1 is stopped as Kubernetes stops a pod (preStop drain, SIGTERM) and started
again on its volume: it is still a member; the chart is rendered with replicaCount=2, the
pre-upgrade Job's command removes sluice-2 (twice: idempotent), pod 2 is stopped, and the
two remaining nodes keep ingesting; the `helm test` Pod's command passes.

Not emulated: the API server, the scheduler, kube-proxy (the client Service's name
resolves to one pod), seccomp, cgroups (resources), image pulls.

Usage: run by scripts/helm-test.sh, as root.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sluice"
RELEASE = "sluice"
NAMESPACE = "ingest"
KUBE_VERSION = "1.37.0"
SUBNET = "10.213.0"
HUB_IP = f"{SUBNET}.1"
KAFKA_HOST = "kafka-0.kafka.test"
# Inside the hub namespace only, so fixed ports cannot collide with anything else.
KAFKA_PORT, KAFKA_BRIDGE_PORT, KAFKA_SASL_PORT, KAFKA_TLS_PORT = 9092, 9094, 9095, 9096
SASL_USER = "sluice"
TOPIC = "github"
FIRST_EVENTS, MORE_EVENTS = 3000, 1500
# The image's PATH (debian:bookworm-slim, no ENV PATH in the Dockerfile).
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(message: str) -> None:
    print(f"[boot {time.strftime('%H:%M:%S')}] {message}", flush=True)


class TestFailed(Exception):
    pass


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise TestFailed(message)


def run(*cmd: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and out.returncode != 0:
        raise TestFailed(f"{' '.join(cmd)} exited {out.returncode}: {out.stdout}{out.stderr}")
    return out


def wait_for(what: str, predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TestFailed(f"timed out after {timeout:.0f}s waiting for {what} (last: {last})")


# ------------------------------------------------------------------------- the image ---

class Image:
    """What the container runtime takes from the image: entrypoint, cmd, user, binary path."""

    def __init__(self, dockerfile: Path, binary: Path):
        text = dockerfile.read_text()
        runtime = text[text.rindex("\nFROM "):]  # the last stage is the image
        self.entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", runtime, re.M).group(1))
        cmd = re.search(r"^CMD (\[.*\])$", runtime, re.M)
        self.cmd = json.loads(cmd.group(1)) if cmd else []
        installed = re.search(r"^COPY --from=\S+ \S+ (/\S+)$", runtime, re.M).group(1)
        ensure(installed == "/usr/local/bin/sluice", f"the Dockerfile installs sluice at {installed}")
        self.install_path = installed
        self.binary = binary


# --------------------------------------------------------------------------- network ---

class Network:
    """Network namespaces on one bridge; the bridge lives in a namespace of its own (the hub)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.hub = f"{prefix}-hub"
        self.namespaces: list[str] = []
        self.links = 0

    def create_hub(self) -> None:
        self._add(self.hub)
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", "br0", "type", "bridge"],
            ["addr", "add", f"{HUB_IP}/24", "dev", "br0"],
            ["link", "set", "br0", "up"],
        ):
            run("ip", "-n", self.hub, *cmd)

    def _add(self, ns: str) -> None:
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)

    def add_host(self, name: str, ip: str) -> str:
        """A namespace with one interface on the bridge; returns its name."""
        ns = f"{self.prefix}-{name}"
        if ns in self.namespaces:
            self.delete(ns)
        self._add(ns)
        self.links += 1
        port = f"v{self.links}"
        run("ip", "link", "add", port, "netns", self.hub, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "-n", self.hub, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def pids(self, ns: str) -> list[int]:
        out = run("ip", "netns", "pids", ns, check=False)
        return [int(p) for p in out.stdout.split()]

    def delete(self, ns: str) -> None:
        for pid in self.pids(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        run("ip", "netns", "del", ns, check=False)
        if ns in self.namespaces:
            self.namespaces.remove(ns)

    def delete_all(self) -> None:
        for ns in reversed(list(self.namespaces)):
            self.delete(ns)


# ----------------------------------------------------------------------------- pods ----

def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: defined variables are replaced, $$ escapes."""
    def replace(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)


class Cluster:
    """The objects a render holds, and the ones the test created as a user would (Secrets)."""

    def __init__(self, docs: list[dict], secrets: dict[str, dict[str, bytes]]):
        self.docs = docs
        self.secrets = secrets

    def one(self, kind: str, suffix: str = "") -> dict:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
        ensure(len(found) == 1, f"expected one {kind} *{suffix} in the render, found {len(found)}")
        return found[0]

    def config_map(self, name: str) -> dict:
        found = [d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
        ensure(len(found) == 1, f"ConfigMap {name} is not in the render")
        return found[0]


class Pod:
    """One pod: a network namespace, a PID and mount namespace, and its container's process."""

    def __init__(self, harness: "Harness", name: str, ip: str, spec: dict, claims: list[dict], cluster: Cluster):
        self.h = harness
        self.name = name
        self.ip = ip
        self.spec = spec
        self.claims = {c["metadata"]["name"] for c in claims}
        self.cluster = cluster
        self.dir = harness.base / "pods" / name
        self.container = spec["containers"][0]
        self.ns: str | None = None
        self.process: subprocess.Popen | None = None
        self.incarnation = 0
        self.env: dict[str, str] = {}

    # -- what the kubelet prepares --------------------------------------------------------

    def security(self, container: dict) -> dict:
        pod = self.spec.get("securityContext", {})
        own = container.get("securityContext", {})
        uid = own.get("runAsUser", pod.get("runAsUser"))
        gid = own.get("runAsGroup", pod.get("runAsGroup", uid))
        ensure(uid is not None and uid != 0, f"{self.name}: runs as root")
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")):
            ensure(uid != 0, f"{self.name}: runAsNonRoot with uid 0")
        return {
            "uid": uid,
            "gid": gid,
            "fsGroup": pod.get("fsGroup", gid),
            "no_new_privs": own.get("allowPrivilegeEscalation") is False,
            "read_only_root": own.get("readOnlyRootFilesystem") is True,
            "drop_all": own.get("capabilities", {}).get("drop") == ["ALL"],
        }

    def environment(self, container: dict) -> dict[str, str]:
        env = {"PATH": IMAGE_PATH, "HOSTNAME": self.name, "HOME": "/"}
        ensure(self.spec.get("enableServiceLinks") is False, "service links are on: the kubelet would add <SERVICE>_PORT variables")
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
                continue
            source = e["valueFrom"]
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                fields = {
                    "metadata.name": self.name,
                    "metadata.namespace": NAMESPACE,
                    "status.podIP": self.ip,
                    "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
                }
                ensure(path in fields, f"fieldRef {path} is not emulated")
                env[e["name"]] = fields[path]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                ensure(ref["name"] in self.cluster.secrets, f"Secret {ref['name']} does not exist (the pod would not start)")
                env[e["name"]] = self.cluster.secrets[ref["name"]][ref["key"]].decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[e["name"]] = self.cluster.config_map(ref["name"])["data"][ref["key"]]
            else:
                raise TestFailed(f"env source {source} is not emulated")
        return env

    def volumes(self, container: dict, sec: dict) -> list[tuple[Path, str, bool]]:
        """(host directory, mount path, read-only) for each volumeMount."""
        by_name = {v["name"]: v for v in self.spec.get("volumes", [])}
        mounts = []
        for m in container.get("volumeMounts", []):
            name = m["name"]
            if name in self.claims:
                source = self.dir / f"pvc-{name}"  # outlives the pod, like the claim
                if not source.exists():
                    source.mkdir(parents=True)
                    os.chown(source, 0, sec["fsGroup"])
                    source.chmod(0o2775)
            else:
                volume = by_name.get(name)
                ensure(volume is not None, f"{self.name}: volumeMount {name} has no volume")
                source = self.dir / f"vol-{name}-{self.incarnation}"
                source.mkdir(parents=True)
                if "configMap" in volume:
                    cm = self.cluster.config_map(volume["configMap"]["name"])
                    mode = volume["configMap"].get("defaultMode", 0o644)
                    for key, text in cm["data"].items():
                        (source / key).write_text(text)
                        (source / key).chmod(mode)
                elif "secret" in volume:
                    secret = self.cluster.secrets.get(volume["secret"]["secretName"])
                    ensure(secret is not None, f"Secret {volume['secret']['secretName']} does not exist")
                    mode = volume["secret"].get("defaultMode", 0o644)
                    for key, data in secret.items():
                        (source / key).write_bytes(data)
                        os.chown(source / key, 0, sec["fsGroup"])
                        (source / key).chmod(mode)
                elif "emptyDir" in volume:
                    source.chmod(0o777)
                else:
                    raise TestFailed(f"volume {volume} is not emulated")
                source.chmod(source.stat().st_mode | 0o755)
            mounts.append((source, m["mountPath"], bool(m.get("readOnly"))))
        return mounts

    def command(self, container: dict) -> list[str]:
        command = container.get("command") or self.h.image.entrypoint
        args = container.get("args") if "args" in container else ([] if container.get("command") else self.h.image.cmd)
        return [expand(str(a), self.env) for a in command + args]

    def hosts_file(self) -> Path:
        path = self.dir / "hosts"
        path.write_text(self.h.hosts(self.name, self.ip))
        return path

    def script(self, container: dict, sec: dict, mounts, argv: list[str], env: dict[str, str]) -> Path:
        """The container runtime's work inside the pod's namespaces, then exec as the user."""
        lines = [
            "set -eu",
            f"mount --bind {self.hosts_file()} /etc/hosts",
            # The image: sluice at the path the Dockerfile installs it, nothing else added.
            "mount -t tmpfs -o mode=0755 image-bin /usr/local/bin",
            f"touch {self.h.image.install_path}",
            f"mount --bind {self.h.image.binary} {self.h.image.install_path}",
        ]
        for source, target, read_only in mounts:
            lines.append(f"mkdir -p {target} 2>/dev/null || test -d {target}")
            lines.append(f"mount --bind {source} {target}")
            if read_only:
                lines.append(f"mount -o remount,bind,ro {target}")
        if sec["read_only_root"]:
            lines.append("mount -o remount,bind,ro /")
        lines.append("cd /")
        privs = [
            "setpriv", f"--reuid={sec['uid']}", f"--regid={sec['gid']}", f"--groups={sec['fsGroup']}",
        ]
        if sec["drop_all"]:
            privs += ["--bounding-set=-all", "--inh-caps=-all"]
        if sec["no_new_privs"]:
            privs.append("--no-new-privs")
        exec_line = privs + ["env", "-i"] + [f"{k}={v}" for k, v in env.items()] + argv
        lines.append("exec " + " ".join(shell_quote(a) for a in exec_line))
        path = self.dir / f"start-{container['name']}-{self.incarnation}.sh"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- the pod's life -----------------------------------------------------------------

    def start(self) -> None:
        self.incarnation += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ns = self.h.net.add_host(self.name, self.ip)
        sec = self.security(self.container)
        self.env = self.environment(self.container)
        argv = self.command(self.container)
        # A kubelet creates mount points; here they live in the scratch directory.
        for m in self.container.get("volumeMounts", []):
            ensure(m["mountPath"].startswith(str(self.h.base)) or m["mountPath"] == "/tmp",
                   f"mount path {m['mountPath']} is outside the scratch directory: render with the test's paths")
        mounts = self.volumes(self.container, sec)
        script = self.script(self.container, sec, mounts, argv, self.env)
        logfile = open(self.h.logs / f"{self.name}-{self.incarnation}.log", "w")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--pid", "--fork", "--mount-proc",
             "--propagation", "private", "sh", str(script)],
            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log(f"{self.name} started at {self.ip}: {' '.join(argv)} (uid {sec['uid']}, read-only root)")

    def node_pid(self) -> int:
        """The container's PID 1, as the host sees it: the child of `unshare --fork`."""
        assert self.process is not None
        def child():
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            try:
                pids = children.read_text().split()
            except FileNotFoundError:
                return None
            return int(pids[0]) if pids else None
        return wait_for(f"{self.name}'s process", child, 10, 0.05)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exec(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        """An exec hook or probe: the command in the container's namespaces, user and env."""
        sec = self.security(self.container)
        pid = self.node_pid()
        cmd = ["nsenter", f"--target={pid}", "--net", "--mount", "--pid",
               "setpriv", f"--reuid={sec['uid']}", f"--regid={sec['gid']}", f"--groups={sec['fsGroup']}",
               "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs",
               "env", "-i", *[f"{k}={v}" for k, v in self.env.items()], *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def stop(self) -> None:
        """As the kubelet deletes a pod: preStop, then SIGTERM, within the grace period."""
        assert self.process is not None
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        deadline = time.monotonic() + grace
        prestop = self.container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        if prestop:
            started = time.monotonic()
            try:
                out = self.exec(prestop, timeout=grace)
                log(f"{self.name} preStop `{' '.join(prestop)}` exited {out.returncode} in "
                    f"{time.monotonic() - started:.1f}s: {(out.stdout + out.stderr).strip()}")
                self.h.prestop_results.append((self.name, out.returncode))
            except subprocess.TimeoutExpired:
                log(f"{self.name} preStop ran past the grace period")
                self.h.prestop_results.append((self.name, None))
        if self.running():
            os.kill(self.node_pid(), signal.SIGTERM)
        try:
            code = self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{self.name} outlived its grace period of {grace}s: SIGKILL")
            os.kill(self.node_pid(), signal.SIGKILL)
            code = self.process.wait(timeout=10)
            raise TestFailed(f"{self.name} did not stop within terminationGracePeriodSeconds={grace}")
        log(f"{self.name} stopped (exit {code})")
        ensure(code == 0, f"{self.name} exited {code} after SIGTERM; see {self.h.logs}")
        self.h.net.delete(self.ns)
        self.process = None

    def kill(self) -> None:
        if self.running():
            try:
                os.kill(self.node_pid(), signal.SIGKILL)
            except (ProcessLookupError, TestFailed):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def shell_quote(s: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:=,@%+-]+", s):
        return s
    return "'" + s.replace("'", "'\"'\"'") + "'"


# -------------------------------------------------------------------------- harness ----

class Harness:
    def __init__(self, args):
        self.args = args
        self.base = Path(tempfile.mkdtemp(prefix="sluice-helm-boot.", dir="/var/tmp"))
        self.base.chmod(0o755)
        self.logs = self.base / "logs"
        self.logs.mkdir()
        (self.base / "bin").mkdir(mode=0o755)
        binary = self.base / "bin" / "sluice"
        shutil.copy2(args.sluice, binary)
        binary.chmod(0o755)
        self.image = Image(ROOT / "Dockerfile", binary)
        self.net = Network(args.prefix)
        self.pods: dict[str, Pod] = {}
        self.job_count = 0
        self.kafka_env = {
            **os.environ,
            "SLUICE_KAFKA_DIR": str(self.base / "kafka"),
            "KAFKA_PORT": str(KAFKA_PORT),
        }
        self.kafka_started = False
        self.prestop_results: list[tuple[str, int | None]] = []
        self.password = os.urandom(12).hex()
        self.client_ns: str | None = None
        # The pod the client Service's name resolves to (kube-proxy picks any ready pod).
        self.service_target = 0

    # -- names ------------------------------------------------------------------------------

    def fqdn(self, pod: str) -> str:
        return f"{pod}.{RELEASE}-headless.{NAMESPACE}.svc.cluster.local"

    def client_service(self) -> str:
        return f"{RELEASE}.{NAMESPACE}.svc.cluster.local"

    def pod_ip(self, ordinal: int) -> str:
        return f"{SUBNET}.{10 + ordinal}"

    def hosts(self, own_name: str, own_ip: str) -> str:
        lines = ["127.0.0.1 localhost", f"{own_ip} {own_name}"]
        for k in range(self.args.max_pods):
            name = f"{RELEASE}-{k}"
            lines.append(f"{self.pod_ip(k)} {self.fqdn(name)}")
        # No kube-proxy here: the client Service's name stands for one ready pod.
        lines.append(f"{self.pod_ip(self.service_target)} {self.client_service()}")
        lines.append(f"{HUB_IP} {KAFKA_HOST}")
        return "\n".join(lines) + "\n"

    # -- rendering --------------------------------------------------------------------------

    def values_file(self) -> Path:
        fs = self.base / "fs"
        for sub in ("etc/sluice/config", "etc/sluice/kafka-tls", "var/lib/sluice"):
            (fs / sub).mkdir(parents=True, exist_ok=True)
        for d in [fs, *fs.rglob("*")]:
            d.chmod(0o755)
        kafka = {"tls": {"existingSecret": "kafka-tls", "mountPath": str(fs / "etc/sluice/kafka-tls")}}
        if self.args.kafka_auth == "sasl_ssl":
            kafka["properties"] = {"security_protocol": "SASL_SSL", "sasl_mechanisms": "SCRAM-SHA-512"}
            kafka["sasl"] = {"existingSecret": "kafka-sasl"}
        else:
            kafka["properties"] = {"security_protocol": "SSL"}
        values = {
            "config": {"mountPath": str(fs / "etc/sluice/config")},
            "persistence": {"mountPath": str(fs / "var/lib/sluice")},
            "kafka": kafka,
            "metrics": {"enabled": True},
        }
        path = self.base / "values-boot.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def render(self, replicas: int) -> Cluster:
        out = run(self.args.helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                  "--kube-version", KUBE_VERSION, "-f", str(self.values_file()),
                  "--set", f"replicaCount={replicas}")
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        secrets = {
            "kafka-sasl": {"username": SASL_USER.encode(), "password": self.password.encode()},
            "kafka-tls": {"ca.crt": (self.base / "tls" / "ca.crt").read_bytes()},
        }
        return Cluster(docs, secrets)

    # -- Kafka ------------------------------------------------------------------------------

    def make_tls(self) -> None:
        tls = self.base / "tls"
        tls.mkdir()
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(tls / "ca.key"), "-out", str(tls / "ca.crt"), "-subj", "/CN=sluice test CA")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls / "server.key"),
            "-out", str(tls / "server.csr"), "-subj", f"/CN={KAFKA_HOST}")
        (tls / "san.ext").write_text(f"subjectAltName=DNS:{KAFKA_HOST}\n")
        run("openssl", "x509", "-req", "-in", str(tls / "server.csr"), "-CA", str(tls / "ca.crt"),
            "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-days", "2", "-out", str(tls / "server.crt"),
            "-extfile", str(tls / "san.ext"))
        (tls / "server.pem").write_text((tls / "server.key").read_text() + (tls / "server.crt").read_text())

    def start_kafka(self) -> None:
        self.make_tls()
        props = "\n".join([
            f"listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{KAFKA_PORT + 1},"
            f"BRIDGE://{HUB_IP}:{KAFKA_BRIDGE_PORT},SASL_SSL://{HUB_IP}:{KAFKA_SASL_PORT},SSL://{HUB_IP}:{KAFKA_TLS_PORT}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},BRIDGE://{HUB_IP}:{KAFKA_BRIDGE_PORT},"
            f"SASL_SSL://{KAFKA_HOST}:{KAFKA_SASL_PORT},SSL://{KAFKA_HOST}:{KAFKA_TLS_PORT}",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,BRIDGE:PLAINTEXT,"
            "SASL_SSL:SASL_SSL,SSL:SSL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.ssl.keystore.type=PEM",
            f"listener.name.sasl_ssl.ssl.keystore.location={self.base / 'tls' / 'server.pem'}",
            "listener.name.ssl.ssl.keystore.type=PEM",
            f"listener.name.ssl.ssl.keystore.location={self.base / 'tls' / 'server.pem'}",
        ])
        env = {**self.kafka_env, "KAFKA_SERVER_PROPS": props}
        self.kafka_started = True
        run("ip", "netns", "exec", self.net.hub, "bash", str(ROOT / "scripts" / "kafka.sh"), "start",
            env=env, timeout=180)
        run("ip", "netns", "exec", self.net.hub, "bash", str(ROOT / "scripts" / "kafka.sh"), "run-class",
            "kafka.admin.ConfigCommand", "--bootstrap-server", f"127.0.0.1:{KAFKA_PORT}", "--alter",
            "--add-config", f"SCRAM-SHA-512=[password={self.password}]", "--entity-type", "users",
            "--entity-name", SASL_USER, env=env, timeout=120)
        log(f"Kafka runs at {HUB_IP}: SASL_SSL (SCRAM-SHA-512, user {SASL_USER}) as {KAFKA_HOST}:{KAFKA_SASL_PORT}, "
            f"SSL as {KAFKA_HOST}:{KAFKA_TLS_PORT}, plaintext for the producer at {HUB_IP}:{KAFKA_BRIDGE_PORT}; "
            f"the nodes use {self.args.kafka_auth.upper()}")

    def stop_kafka(self) -> None:
        if self.kafka_started:
            run("bash", str(ROOT / "scripts" / "kafka.sh"), "stop", "--wipe", env=self.kafka_env, check=False, timeout=60)

    # -- clients ----------------------------------------------------------------------------

    def client(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """A person's sluice command, from a machine of its own on the pod network."""
        if self.client_ns is None:
            self.client_ns = self.net.add_host("client", f"{SUBNET}.200")
            (self.base / "client-hosts").write_text(self.hosts("client", f"{SUBNET}.200"))
        script = f'mount --bind {self.base / "client-hosts"} /etc/hosts && exec "$@"'
        return run("ip", "netns", "exec", self.client_ns, "sh", "-c", script, "sh",
                   str(self.image.binary), *argv, check=check, timeout=timeout)

    def sql(self, pod: str, statement: str) -> str:
        out = self.client("sql", "--host", f"http://{self.fqdn(pod)}:7070", "--format", "tsv", statement, check=False)
        return out.stdout.strip() if out.returncode == 0 else f"error: {out.stderr.strip()}"

    def probe(self, targets: list[str], timeout: float) -> dict[str, str]:
        """The kubelet's gRPC probes (it dials pod IPs from the node's network: the hub)."""
        out = run("ip", "netns", "exec", self.net.hub, "env", "-i", f"PATH={IMAGE_PATH}",
                  self.args.python, str(Path(__file__).parent / "health_probe.py"),
                  "--timeout", str(timeout), *targets, timeout=60)
        return json.loads(out.stdout)

    def scrape(self, name: str) -> str:
        """GET /metrics at the pod's metrics port, as Prometheus would (from the node network)."""
        pod = self.pods[name]
        port = next(p["containerPort"] for p in pod.spec["containers"][0]["ports"] if p["name"] == "metrics")
        fetch = ("import sys, urllib.request; "
                 "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())")
        out = run("ip", "netns", "exec", self.net.hub, self.args.python, "-c", fetch,
                  f"http://{pod.ip}:{port}/metrics", timeout=30)
        return out.stdout

    def probe_pods(self, pods: list[str], kind: str) -> dict[str, str]:
        targets = {}
        for name in pods:
            pod = self.pods[name]
            spec = pod.container[kind]["grpc"]
            targets[name] = f"{pod.ip}:{spec['port']}/{spec.get('service', '')}"
        timeout = self.pods[pods[0]].container[kind].get("timeoutSeconds", 1)
        result = self.probe(list(targets.values()), timeout)
        return {name: result[t] for name, t in targets.items()}

    def run_job(self, cluster: Cluster, suffix: str) -> str:
        """A hook Job's pod, once, in a namespace of its own; returns its output."""
        job = cluster.one("Job", suffix)
        spec = job["spec"]["template"]["spec"]
        self.job_count += 1
        pod = Pod(self, f"{job['metadata']['name']}-{self.job_count}", f"{SUBNET}.{100 + self.job_count}", spec, [], cluster)
        pod.start()
        try:
            code = pod.process.wait(timeout=self.args.job_timeout)
        except subprocess.TimeoutExpired:
            pod.kill()
            raise TestFailed(f"Job {job['metadata']['name']} did not finish in {self.args.job_timeout}s")
        output = (self.logs / f"{pod.name}-1.log").read_text()
        log(f"Job {job['metadata']['name']} exited {code}: {output.strip()}")
        ensure(code == 0, f"Job {job['metadata']['name']} failed: {output}")
        self.net.delete(pod.ns)
        return output

    def run_test_pod(self, cluster: Cluster) -> str:
        test = cluster.one("Pod", "-test-status")
        self.job_count += 1
        pod = Pod(self, f"{test['metadata']['name']}-{self.job_count}", f"{SUBNET}.{100 + self.job_count}", test["spec"], [], cluster)
        pod.start()
        code = pod.process.wait(timeout=60)
        output = (self.logs / f"{pod.name}-1.log").read_text()
        ensure(code == 0, f"the helm test Pod failed: {output}")
        self.net.delete(pod.ns)
        return output

    def members(self, via: str) -> list[str]:
        out = self.sql(via, "SELECT node FROM system.replicas ORDER BY node")
        return out.split("\n") if not out.startswith("error") else [out]

    def wait_count(self, pods: list[str], expected: int, timeout: float) -> None:
        def counts():
            got = {p: self.sql(p, f"SELECT count() FROM {TOPIC}") for p in pods}
            return got if all(v == str(expected) for v in got.values()) else None
        try:
            wait_for(f"{expected} rows on {pods}", counts, timeout, 1.0)
        except TestFailed:
            got = {p: self.sql(p, f"SELECT count() FROM {TOPIC}") for p in pods}
            raise TestFailed(f"rows per pod after {timeout:.0f}s: {got}, want {expected} on each")

    def produce(self, count: int, start: int) -> None:
        self.client("produce", "--brokers", f"{HUB_IP}:{KAFKA_BRIDGE_PORT}", "--topic", TOPIC,
                    "--partitions", "3", "--count", str(count), "--start-index", str(start), "--quiet")

    # -- the scenario -----------------------------------------------------------------------

    def scenario(self) -> None:
        self.net.create_hub()
        self.start_kafka()

        three = self.render(3)
        sts = three.one("StatefulSet")
        ensure(sts["spec"]["podManagementPolicy"] == "Parallel", "pods do not start in parallel")
        template = sts["spec"]["template"]["spec"]
        claims = sts["spec"].get("volumeClaimTemplates", [])
        for k in range(sts["spec"]["replicas"]):
            name = f"{sts['metadata']['name']}-{k}"
            self.pods[name] = Pod(self, name, self.pod_ip(k), template, claims, three)
        names = list(self.pods)
        for pod in self.pods.values():  # podManagementPolicy: Parallel
            pod.start()

        # Startup and liveness: the server answers; readiness: not before the cluster exists.
        wait_for("the startup probes", lambda: all(
            s == "SERVING" for s in self.probe_pods(names, "startupProbe").values()), 60)
        ensure(all(s == "SERVING" for s in self.probe_pods(names, "livenessProbe").values()), "liveness fails")
        ready = self.probe_pods(names, "readinessProbe")
        log(f"before the init Job: readiness {ready}")
        ensure(all(s != "SERVING" for s in ready.values()), f"pods are ready before the cluster was initialized: {ready}")

        # The post-install hook, twice: the second run must find the cluster formed.
        first = self.run_job(three, "-init")
        ensure("initialized cluster" in first, f"the init Job did not form a cluster: {first}")
        again = self.run_job(three, "-init")
        ensure("already initialized" in again, f"a second init Job did not say 'already initialized': {again}")
        wait_for("every pod to be ready (in a quorum)", lambda: all(
            s == "SERVING" for s in self.probe_pods(names, "readinessProbe").values()), 90, 1.0)
        ensure(self.members(names[0]) == names, f"members: {self.members(names[0])}")
        log(f"cluster formed: {names}, all ready")

        # The quickstart through the client Service, ingesting over SASL_SSL with the
        # credentials and CA from the Secrets.
        ddl = (ROOT / "scripts" / "sql" / "quickstart.sql").read_text()
        port = KAFKA_SASL_PORT if self.args.kafka_auth == "sasl_ssl" else KAFKA_TLS_PORT
        ddl = ddl.replace("${KAFKA_BROKERS}", f"{KAFKA_HOST}:{port}").replace(
            "${KAFKA_TOPIC}", TOPIC).replace("${KAFKA_GROUP}", "sluice-helm")
        (self.base / "quickstart.sql").write_text(ddl)
        self.produce(FIRST_EVENTS, 0)
        self.client("sql", "--host", f"http://{self.client_service()}:7070", "-f", str(self.base / "quickstart.sql"))
        self.wait_count(names, FIRST_EVENTS, 120)
        log(f"{FIRST_EVENTS} events ingested into every replica")
        # Every pod's Prometheus endpoint, at the port the chart declares, counts them.
        for name in names:
            text = self.scrape(name)
            rows = re.search(rf'^sluice_table_rows\{{table="{TOPIC}"\}} (\d+)$', text, re.M)
            ensure(rows is not None and int(rows.group(1)) == FIRST_EVENTS,
                   f"{name}'s metrics do not count {FIRST_EVENTS} rows in {TOPIC}: {text[-2000:]}")
        log(f"every pod's /metrics counts {FIRST_EVENTS} rows")

        # A restart: preStop drains, SIGTERM stops; the member stays; the pod comes back on
        # its volume and is ready again.
        self.pods[names[1]].stop()
        ensure(self.prestop_results[-1] == (names[1], 0), f"the preStop drain of a member failed: {self.prestop_results}")
        ensure(self.members(names[0]) == names, f"a restart changed the members: {self.members(names[0])}")
        self.pods[names[1]].start()
        wait_for(f"{names[1]} ready after its restart", lambda: self.probe_pods(
            [names[1]], "readinessProbe")[names[1]] == "SERVING", 90, 1.0)
        self.wait_count([names[1]], FIRST_EVENTS, 60)
        log(f"{names[1]} restarted on its volume: still a member, ready, {FIRST_EVENTS} rows")

        # Scale down to 2: the pod template does not change, the pre-upgrade Job removes
        # sluice-2 (idempotent), then the StatefulSet stops pod 2.
        two = self.render(2)
        ensure(two.one("StatefulSet")["spec"]["template"] == sts["spec"]["template"],
               "the pod template changes with replicaCount: scaling would restart pods")
        # The Service may route the Job to the very pod it removes: make it so.
        self.service_target = 2
        removed = self.run_job(two, "-scale-down")
        ensure(f"{names[2]} removed" in removed, f"the scale-down Job did not remove {names[2]}: {removed}")
        # The removed node hears it from the leader within a heartbeat or two: it stops
        # its consumers and reports not ready, so the client Service stops routing to it.
        wait_for(f"the removed {names[2]} to report not ready", lambda: self.probe_pods(
            [names[2]], "readinessProbe")[names[2]] != "SERVING", 30, 0.5)
        log(f"the removed {names[2]} reports not ready")
        self.service_target = 0  # kube-proxy routes to ready pods only
        again = self.run_job(two, "-scale-down")
        ensure("no member" in again, f"a second scale-down Job was not a no-op: {again}")
        self.service_target = 0
        self.pods[names[2]].stop()
        # Its preStop drain has nothing to wait for: a failure would be a FailedPreStopHook
        # event and a pod that takes the whole grace period to go.
        ensure(self.prestop_results[-1] == (names[2], 0),
               f"the preStop drain of the removed pod failed: {self.prestop_results}")
        kept = names[:2]
        members = wait_for("two members", lambda: (m := self.members(kept[0])) == kept and m, 30)
        log(f"after the scale-down: members {members}")
        status = self.client("status", "--host", f"http://{self.client_service()}:7070").stdout
        ensure(names[2] not in status.split("partition")[0] and all(n in status for n in kept),
               f"sluice status after the scale-down: {status}")
        wait_for("both pods ready", lambda: all(
            s == "SERVING" for s in self.probe_pods(kept, "readinessProbe").values()), 60, 1.0)
        self.produce(MORE_EVENTS, FIRST_EVENTS)
        self.wait_count(kept, FIRST_EVENTS + MORE_EVENTS, 120)
        log(f"two nodes keep ingesting: {FIRST_EVENTS + MORE_EVENTS} rows on {kept}")

        output = self.run_test_pod(two)
        ensure(all(n in output for n in kept), f"the helm test Pod's status: {output}")

    def cleanup(self, keep_logs: bool) -> None:
        for pod in self.pods.values():
            pod.kill()
        self.stop_kafka()
        self.net.delete_all()
        if keep_logs:
            target = Path(self.args.keep_logs_in)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.logs, target)
            log(f"logs kept in {target}")
        shutil.rmtree(self.base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Boot the rendered chart in network namespaces")
    parser.add_argument("--helm", required=True)
    parser.add_argument("--sluice", required=True, help="the sluice binary (copied first)")
    parser.add_argument("--python", required=True, help="a Python with grpcio-health-checking")
    parser.add_argument("--prefix", required=True, help="prefix of the network namespaces")
    parser.add_argument("--max-pods", type=int, default=5)
    parser.add_argument("--kafka-auth", choices=["sasl_ssl", "ssl"], default="sasl_ssl",
                        help="how the nodes reach Kafka: SASL/SCRAM over TLS (the default), or TLS only")
    parser.add_argument("--job-timeout", type=float, default=120)
    parser.add_argument("--keep-logs-in", default=str(Path.home() / ".cache" / "sluice" / "helm-boot-logs"))
    args = parser.parse_args()
    ensure(os.geteuid() == 0, "network namespaces need root")
    harness = Harness(args)
    failed = True
    # SIGTERM/SIGINT (a CI timeout, Ctrl-C) still cleans up.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(130))
    atexit.register(lambda: harness.cleanup(keep_logs=failed))
    started = time.monotonic()
    try:
        harness.scenario()
        failed = False
    except Exception as e:  # noqa: BLE001 - any failure: report it with the pods' logs
        if not isinstance(e, TestFailed):
            import traceback
            traceback.print_exc()
        print(f"FAIL  boot test: {e}", flush=True)
        for path in sorted(harness.logs.glob("*.log")):
            print(f"---- last lines of {path.name}", flush=True)
            print("\n".join(path.read_text(errors="replace").splitlines()[-15:]), flush=True)
    log(f"took {time.monotonic() - started:.0f}s")
    print(f"boot: {0 if failed else 1} passed, {1 if failed else 0} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
