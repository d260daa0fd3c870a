"""A real Kubernetes control plane on 127.0.0.1 for the ``k8s`` tests, without Docker.

etcd 3.5, kube-apiserver, kube-controller-manager and kube-scheduler (built once from the Go
module proxy by ``tools/k8s/control-plane.sh`` and cached), plus kwok, which plays the kubelet
for fake nodes: pods scheduled to them go Running and Ready, except pods of an embedding
version listed in ``unready_versions``, which stay unready forever (a rollout that never
becomes ready). kubectl and helm come from ``tools/k8s/install-helm.sh``.
"""

# ruff: noqa: E501  (kwok's stage templates below are YAML whose flow lines run long)
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

from .net import free_port
from .servers import ServerError, tail
from .waiting import wait_for_probe

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "recengine-test-admin-token"

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

STAGES = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: node-up}
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'NotIn'
      values: ['Running']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: Ready, status: "True", reason: KubeletReady, message: "kwok", lastHeartbeatTime: {{ $now | Quote }}, lastTransitionTime: {{ $now | Quote }}}
      addresses:
      - {type: InternalIP, address: {{ NodeIP | Quote }}}
      allocatable: {cpu: "1k", memory: 1Ti, pods: "1k"}
      capacity: {cpu: "1k", memory: 1Ti, pods: "1k"}
      nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: "fake", kubeProxyVersion: "fake", containerRuntimeVersion: "kwok"}
      phase: Running
@POD_STAGES@---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-gone}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    finalizers: {empty: true}
    delete: true
"""

#: A running pod's status; the index pods of the versions in ``unready_versions`` stay unready
#: (stage ``pod-stuck``), every other pod becomes ready (``pod-up``).
_POD_STAGE = """\
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: @NAME@}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.podIP'
      operator: 'DoesNotExist'
    - key: '.metadata.annotations["recengine.io/embedding-version"]'
      operator: '@OP@'
      values: [UNREADY]
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "@STATUS@",@REASON@ lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "@STATUS@", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: @READY@, restartCount: 0, state: {running: {startedAt: {{ $now | Quote }}}}}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
"""


def _pod_stage(name: str, ready: bool) -> str:
    return (_POD_STAGE.replace("@NAME@", name).replace("@OP@", "NotIn" if ready else "In")
            .replace("@STATUS@", "True" if ready else "False")
            .replace("@REASON@", "" if ready else " reason: ContainersNotReady,")
            .replace("@READY@", "true" if ready else "false"))


STAGES = STAGES.replace("@POD_STAGES@", _pod_stage("pod-up", True) + _pod_stage("pod-stuck", False))



def _tool(script: str) -> Path:
    out = subprocess.run(["bash", str(ROOT / "tools" / "k8s" / script)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise ServerError(f"{script} failed:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


class ControlPlane:
    """etcd + apiserver + controller-manager + scheduler + kwok with one fake node."""

    def __init__(self, unready_versions: tuple[str, ...] = ("13",)) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="recengine-k8s-"))
        self.etcd_dir = Path(tempfile.mkdtemp(prefix="recengine-etcd-", dir="/dev/shm"))
        self.unready_versions = unready_versions
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = 0
        self.kubeconfig = self.dir / "kubeconfig"

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        bin_dir = _tool("control-plane.sh")
        self.tools = _tool("install-helm.sh")
        d = self.dir
        subprocess.run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(d / "sa.key"), "-pubout", "-out",
                        str(d / "sa.pub")], check=True, capture_output=True)
        (d / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
        etcd_port, peer_port = free_port(), free_port()
        self.port = free_port()
        self._run("etcd", [str(bin_dir / "etcd"), "--data-dir", str(self.etcd_dir),
                           "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                           "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                           "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                           "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                           "--unsafe-no-fsync", "--log-level", "warn"])
        self._run("kube-apiserver", [
            str(bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={self.port}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", f"--cert-dir={d / 'certs'}",
            "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true", "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer=https://127.0.0.1:{self.port}/",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--token-auth-file={d / 'tokens.csv'}", "--v=0"])
        self._wait(lambda: self.get("/readyz").status_code == 200, "kube-apiserver", 120)
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}]}))
        kc = f"--kubeconfig={self.kubeconfig}"
        self._run("kube-controller-manager", [
            str(bin_dir / "kube-controller-manager"), kc, "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", "--leader-elect=false",
            f"--service-account-private-key-file={d / 'sa.key'}",
            "--node-monitor-grace-period=1h"])
        self._run("kube-scheduler", [str(bin_dir / "kube-scheduler"), kc,
                                     "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
                                     "--leader-elect=false"])
        stages = STAGES.replace("UNREADY", ", ".join(f"'{v}'" for v in self.unready_versions))
        (d / "kwok.yaml").write_text(stages)
        self._run("kwok", [str(bin_dir / "kwok"), kc, "--manage-all-nodes=true",
                           f"--config={d / 'kwok.yaml'}",
                           f"--server-address=127.0.0.1:{free_port()}"])
        self.kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "kwok-node-0", "labels": {"type": "kwok"},
                         "annotations": {"kwok.x-k8s.io/node": "fake"}}}))
        self._wait(lambda: "True" in self.kubectl(
            "get", "node", "kwok-node-0", "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}"), "fake node", 60)
        return self

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()

    def cleanup(self) -> None:
        self.stop()
        if not os.environ.get("RECENGINE_KEEP_SERVER_DATA"):
            shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.etcd_dir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # --- helpers -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """An environment whose kubectl, helm and Python clients talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                "PATH": f"{self.tools}{os.pathsep}{os.environ.get('PATH', '')}"}

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"},
                            verify=False, timeout=5)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        r = subprocess.run([str(self.tools / "kubectl"), *args], input=stdin, text=True,
                           capture_output=True, env=self.env(), timeout=120)
        if check and r.returncode != 0:
            raise ServerError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(self.tools / "helm"), *args], text=True, capture_output=True,
                           env=self.env(), timeout=300)
        if check and r.returncode != 0:
            raise ServerError(f"helm {' '.join(args)}: {r.stderr.strip()[-3000:]}")
        return r

    def namespace(self) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        return name

    def _run(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def _wait(self, ready: Callable[[], object], what: str, timeout_s: float) -> None:
        wait_for_probe(ready, f"{what} to be ready", timeout_s, check=self._check_running,
                       logs=self._logs, error=ServerError)

    def _check_running(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise ServerError(f"{name} exited ({p.returncode}):\n"
                                  f"{tail(self.dir / f'{name}.log')}")

    def _logs(self) -> str:
        return "\n".join(f"--- {n}\n{tail(self.dir / f'{n}.log')}" for n in self.procs)
