"""The Helm chart, rendered and linted without a cluster; the RecEngine CRD; skaffold.yaml.

helm 3.18 comes from tools/k8s/install-helm.sh (cached in ~/.cache/recengine/bin). Every
scenario in charts/recengine/ci/ is linted with --strict and rendered, and the rendered
objects are checked for what a hardened install needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recengine.serve import free_port

yaml = pytest.importorskip("yaml")

pytestmark = pytest.mark.chart

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "recengine"
CRD = CHART / "crds" / "recengine.io_recengines.yaml"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}
ROLES = ("trainer", "index", "api", "operator")


@pytest.fixture(scope="session")
def helm() -> str:
    out = subprocess.run(["bash", str(ROOT / "tools/k8s/install-helm.sh")], check=True,
                         capture_output=True, text=True, timeout=600)
    path = Path(out.stdout.strip().splitlines()[-1]) / "helm"
    assert path.exists(), out.stderr
    return str(path)


def render(helm: str, *args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    out = subprocess.run([helm, "template", "rel", str(chart), "--namespace", "recs", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[str, list[dict[str, Any]]]:
    return {name: render(helm, "-f", str(CHART / "ci" / name)) for name in SCENARIOS}


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict]]:
    """(workload name, container, pod spec) for every container and init container, the
    `helm test` Pod's included."""
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                yield doc["metadata"]["name"], c, spec


def component(doc: dict[str, Any]) -> str:
    return doc["metadata"]["labels"].get("app.kubernetes.io/component", "")


def test_ci_scenarios_cover_what_the_chart_promises():
    assert {"default-values.yaml", "production-values.yaml", "minimal-values.yaml",
            "recengine-values.yaml", "scheduling-values.yaml"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes(helm: str, scenario: str):
    out = subprocess.run([helm, "lint", "--strict", str(CHART), "-f",
                          str(CHART / "ci" / scenario)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_has_requests_limits_and_a_hardened_security_context(
        rendered, scenario: str):
    seen = 0
    for workload, c, pod in containers(rendered[scenario]):
        seen += 1
        where = f"{scenario}: {workload}/{c['name']}"
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c.get("resources", {}).get(part, {})), where
        sc = c.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), where
        assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        # A read-only root filesystem needs somewhere to write temporary files.
        assert any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])), where
    assert seen


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_recengine_containers_run_as_uid_10001(rendered, scenario: str):
    for workload, c, _ in containers(rendered[scenario]):
        if "grafana" not in workload:
            assert c["securityContext"]["runAsUser"] == 10001, f"{workload}/{c['name']}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_api_and_index_have_readiness_liveness_and_startup_probes(rendered, scenario: str):
    deployments = by_kind(rendered[scenario], "Deployment")
    for role in ("api", "index"):
        c = next(c for c in deployments[f"rel-recengine-{role}"]["spec"]["template"]["spec"]
                 ["containers"] if c["name"] == role)
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_index_pods_carry_the_embedding_version_the_operator_patches(rendered):
    index = by_kind(rendered["default-values.yaml"], "Deployment")["rel-recengine-index"]
    template = index["spec"]["template"]
    assert template["metadata"]["annotations"]["recengine.io/embedding-version"] == "latest"
    (c,) = [c for c in template["spec"]["containers"] if c["name"] == "index"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RECENGINE_INDEX_VERSION"] == "latest"
    # A rollout never drops below the serving capacity.
    assert index["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_trainer_is_one_replica_replaced_by_recreate(rendered):
    trainer = by_kind(rendered["default-values.yaml"], "Deployment")["rel-recengine-trainer"]
    assert trainer["spec"]["replicas"] == 1
    assert trainer["spec"]["strategy"] == {"type": "Recreate"}


def test_services_get_backends_from_the_configmap_and_secret(rendered):
    docs = rendered["default-values.yaml"]
    config = by_kind(docs, "ConfigMap")["rel-recengine-config"]["data"]
    assert config["RECENGINE_METRICS_URL"] == "statsd://127.0.0.1:8125"
    assert config["RECENGINE_INDEX_URL"] == "http://rel-recengine-index:8081"
    for name in ("rel-recengine-api", "rel-recengine-index", "rel-recengine-trainer"):
        spec = by_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]
        env_from = spec["containers"][0]["envFrom"]
        assert {"configMapRef": {"name": "rel-recengine-config"}} in env_from
        assert {"secretRef": {"name": "rel-recengine-backends"}} in env_from
        assert spec["automountServiceAccountToken"] is False


def test_existing_secret_replaces_the_charts_backends_secret(rendered):
    docs = rendered["production-values.yaml"]
    assert "rel-recengine-backends" not in by_kind(docs, "Secret")
    api = by_kind(docs, "Deployment")["rel-recengine-api"]["spec"]["template"]["spec"]
    assert {"secretRef": {"name": "movies-backends"}} in api["containers"][0]["envFrom"]
    config = by_kind(docs, "ConfigMap")["rel-recengine-config"]["data"]
    assert config["RECENGINE_NAME"] == "movies"
    assert config["RECENGINE_BATCH_SIZE"] == "4096"


def test_statsd_sidecar_in_every_recengine_pod_only_when_enabled(rendered):
    for scenario, expected in (("default-values.yaml", True), ("minimal-values.yaml", False)):
        deployments = by_kind(rendered[scenario], "Deployment")
        for role in ("api", "index", "trainer", "operator"):
            names = [c["name"] for c in
                     deployments[f"rel-recengine-{role}"]["spec"]["template"]["spec"]["containers"]]
            assert ("statsd" in names) is expected, (scenario, role)
    sidecar = by_kind(rendered["default-values.yaml"], "ConfigMap")["rel-recengine-statsd"]
    assert 'graphiteHost: "rel-recengine-graphite"' in sidecar["data"]["config.js"]
    minimal = by_kind(rendered["minimal-values.yaml"], "ConfigMap")["rel-recengine-config"]
    assert minimal["data"]["RECENGINE_METRICS_URL"] == "off"


def test_operator_role_is_least_privilege(rendered):
    docs = rendered["production-values.yaml"]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = by_kind(docs, "Role")["rel-recengine-operator"]
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"]
            assert rule["resourceNames"] == ["movies-backends", "movies-backends-staging"]
    assert grants[("recengine.io", "recengines")] == {"get", "list", "watch", "patch"}
    assert grants[("recengine.io", "recengines/status")] <= {"get", "patch"}
    assert grants[("apps", "deployments")] == {"get", "list", "watch", "patch"}
    assert grants[("apps", "replicasets")] == {"get", "list", "watch"}
    assert grants[("", "pods")] == {"get", "list", "watch"}
    assert grants[("", "events")] == grants[("events.k8s.io", "events")] == {"create", "patch"}
    assert grants[("kopf.dev", "kopfpeerings")] == {"get", "list", "watch", "patch"}
    for (_, resource), verbs in grants.items():
        assert not verbs & {"delete", "deletecollection", "escalate", "bind", "impersonate"}
        if resource != "events":
            assert "create" not in verbs, resource
    binding = by_kind(docs, "RoleBinding")["rel-recengine-operator"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-recengine-operator",
                                    "namespace": "recs"}]


def test_operator_watches_its_namespace_through_its_peering(rendered):
    docs = rendered["default-values.yaml"]
    operator = by_kind(docs, "Deployment")["rel-recengine-operator"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in operator["containers"][0]["env"]}
    assert env["WATCH_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["KOPF_RUN_PEERING"]["value"] == "rel-recengine"
    assert env["RECENGINE_METRICS_URL"]["value"] == "statsd://127.0.0.1:8125"
    assert "rel-recengine" in by_kind(docs, "KopfPeering")
    assert operator["serviceAccountName"] == "rel-recengine-operator"


@pytest.mark.parametrize("typo", ["apii.replicaCount=3", "api.replicaCont=3",
                                  "index.pdb.minAvailble=1", "grafana.admin.pasword=x",
                                  "api.probes.liveness.periodSecond=5", "api.pdb.enabeld=false",
                                  "helmTest.userid=x", "trainer.probes.livenes.periodSeconds=5"])
def test_a_misspelt_value_fails_helm_template(helm: str, typo: str):
    out = subprocess.run([helm, "template", "rel", str(CHART), "--set", typo],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Additional property" in out.stderr


@pytest.mark.parametrize("bad", ["recengine.embedding.policy=Newest",
                                 "containerSecurityContext.readOnlyRootFilesystem=false",
                                 "api.autoscaling.targetCPUUtilizationPercentage=0",
                                 "backends.cacheUrl=memcached://x",
                                 "index.probes.readiness.periodSeconds=0",
                                 "api.probes.startup.httpGet.path=healthz",
                                 "api.pdb.maxUnavailable=-1",
                                 "trainer.priorityClassName=Not_A_Name",
                                 "index.podLabels.app\\.kubernetes\\.io/component=other",
                                 "index.topologySpreadConstraints[0].maxSkew=1"])
def test_a_value_of_the_wrong_kind_fails_helm_template(helm: str, bad: str):
    out = subprocess.run([helm, "template", "rel", str(CHART), "--set", bad],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, bad


def test_a_pinned_recengine_without_a_version_fails(helm: str):
    out = subprocess.run([helm, "template", "rel", str(CHART), "--set", "recengine.create=true",
                          "--set", "recengine.embedding.policy=Pinned"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "version must be >= 1" in out.stderr


def test_recengine_from_values_names_the_charts_index_and_secret(rendered):
    (rec,) = by_kind(rendered["recengine-values.yaml"], "RecEngine").values()
    assert rec["apiVersion"] == "recengine.io/v1alpha1"
    assert rec["spec"]["index"]["deployment"] == "rel-recengine-index"
    assert rec["spec"]["artifacts"]["secretRef"] == "rel-recengine-backends"
    assert rec["spec"]["embedding"]["policy"] == "Pinned"
    assert rec["spec"]["embedding"]["version"] == 12
    assert not by_kind(rendered["default-values.yaml"], "RecEngine")


def test_ingress_routes_recommend_events_and_openapi_to_the_api_with_tls(rendered):
    (ingress,) = by_kind(rendered["production-values.yaml"], "Ingress").values()
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["secretName"] == "recommend-example-com-tls"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "recommend.example.com"
    routes = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert {"/recommend", "/events", "/openapi.json"} == set(routes)
    for service in routes.values():
        assert service == {"name": "rel-recengine-api", "port": {"number": 8080}}
    assert not by_kind(rendered["default-values.yaml"], "Ingress")


def test_api_hpa_scales_on_cpu_and_owns_the_replica_count(rendered):
    docs = rendered["production-values.yaml"]
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-recengine-api"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in by_kind(docs, "Deployment")["rel-recengine-api"]["spec"]


def test_index_pdb_uses_min_available_or_max_unavailable(rendered):
    default = by_kind(rendered["default-values.yaml"], "PodDisruptionBudget")
    assert default["rel-recengine-index"]["spec"]["minAvailable"] == 1
    production = by_kind(rendered["production-values.yaml"], "PodDisruptionBudget")
    assert production["rel-recengine-index"]["spec"] == {
        "maxUnavailable": 1, "selector": default["rel-recengine-index"]["spec"]["selector"]}


def test_api_pdb_uses_min_available_or_max_unavailable(rendered):
    default = by_kind(rendered["default-values.yaml"], "PodDisruptionBudget")["rel-recengine-api"]
    assert default["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/name": "recengine", "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": "api"}}}
    scheduled = by_kind(rendered["scheduling-values.yaml"], "PodDisruptionBudget")
    assert scheduled["rel-recengine-api"]["spec"]["maxUnavailable"] == "25%"
    assert "minAvailable" not in scheduled["rel-recengine-api"]["spec"]
    # One API pod and a budget of one would block every node drain: the minimal scenario has none.
    assert not by_kind(rendered["minimal-values.yaml"], "PodDisruptionBudget")


def role_pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    deployments = by_kind(docs, "Deployment")
    return {role: deployments[f"rel-recengine-{role}"]["spec"]["template"] for role in ROLES}


def role_container(docs: list[dict[str, Any]], role: str) -> dict[str, Any]:
    (c,) = [c for c in role_pods(docs)[role]["spec"]["containers"] if c["name"] == role]
    return c


def test_probes_come_from_each_roles_values(rendered):
    docs = rendered["default-values.yaml"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for role in ROLES:
        c = role_container(docs, role)
        for kind in ("startup", "readiness", "liveness"):
            assert c.get(f"{kind}Probe") == values[role]["probes"].get(kind), (role, kind)
    # The defaults are what the templates had fixed before the probes became values.
    api = role_container(docs, "api")
    assert api["startupProbe"] == {"httpGet": {"path": "/healthz", "port": "http"},
                                   "periodSeconds": 2, "failureThreshold": 30,
                                   "timeoutSeconds": 2}
    index = role_container(docs, "index")
    assert (index["startupProbe"]["periodSeconds"],
            index["startupProbe"]["failureThreshold"]) == (5, 120)
    assert index["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    operator = role_container(docs, "operator")
    assert operator["livenessProbe"]["initialDelaySeconds"] == 10
    assert not {"startupProbe", "readinessProbe"} & set(operator)
    assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(
        role_container(docs, "trainer"))
    # A scenario changes timings and keeps the handler.
    tuned = rendered["scheduling-values.yaml"]
    startup = role_container(tuned, "index")["startupProbe"]
    assert (startup["periodSeconds"], startup["failureThreshold"]) == (10, 360)
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    liveness = role_container(tuned, "api")["livenessProbe"]
    assert (liveness["periodSeconds"], liveness["timeoutSeconds"]) == (15, 5)


def test_a_probe_can_be_dropped_swapped_or_added(helm: str):
    docs = render(helm, "--set", "api.probes.liveness=null",
                  "--set", "index.probes.liveness.httpGet=null",
                  "--set", "index.probes.liveness.tcpSocket.port=http",
                  "--set-json", 'trainer.probes.liveness={"exec": {"command": ["true"]}, '
                                '"periodSeconds": 30}')
    assert "livenessProbe" not in role_container(docs, "api")
    assert role_container(docs, "index")["livenessProbe"] == {
        "tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3,
        "failureThreshold": 3}
    assert role_container(docs, "trainer")["livenessProbe"] == {
        "exec": {"command": ["true"]}, "periodSeconds": 30}
    # Two handlers in one probe are refused before anything reaches the API server.
    out = subprocess.run([helm, "template", "rel", str(CHART), "--set",
                          "index.probes.liveness.tcpSocket.port=http"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "index.probes.liveness" in out.stderr


def test_pod_labels_priority_and_topology_spread_per_role(rendered):
    for role, pod in role_pods(rendered["default-values.yaml"]).items():
        assert not {"priorityClassName", "topologySpreadConstraints"} & set(pod["spec"]), role
        assert "team" not in pod["metadata"]["labels"]
    pods = role_pods(rendered["scheduling-values.yaml"])
    deployments = by_kind(rendered["scheduling-values.yaml"], "Deployment")
    for role, pod in pods.items():
        selector = deployments[f"rel-recengine-{role}"]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items(), role
    assert pods["index"]["metadata"]["labels"]["team"] == "recommendations"
    assert pods["operator"]["metadata"]["labels"]["team"] == "platform"
    assert pods["index"]["spec"]["priorityClassName"] == "recengine-serving"
    assert pods["trainer"]["spec"]["priorityClassName"] == "recengine-batch"
    assert "priorityClassName" not in pods["operator"]["spec"]
    (index_spread,) = pods["index"]["spec"]["topologySpreadConstraints"]
    # Without a labelSelector the constraint spreads the role's own pods...
    assert index_spread == {
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": deployments["rel-recengine-index"]["spec"]["selector"]
                          ["matchLabels"]}}
    # ...and one with a labelSelector keeps it.
    (api_spread,) = pods["api"]["spec"]["topologySpreadConstraints"]
    assert api_spread["labelSelector"] == {"matchLabels": {"app.kubernetes.io/component": "api"}}


def test_pod_labels_win_over_common_labels(helm: str):
    docs = render(helm, "--set", "commonLabels.team=all", "--set", "api.podLabels.team=api")
    pods = role_pods(docs)
    assert pods["api"]["metadata"]["labels"]["team"] == "api"
    assert pods["index"]["metadata"]["labels"]["team"] == "all"


def helm_test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (pod,) = [d for d in docs if d["kind"] == "Pod"
              and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    return pod


def test_helm_test_pod_asks_the_api_service_with_the_api_image(rendered):
    docs = rendered["default-values.yaml"]
    pod = helm_test_pod(docs)
    assert pod["metadata"]["name"] == "rel-recengine-test"
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    (c,) = pod["spec"]["containers"]
    api = role_container(docs, "api")
    assert c["image"] == api["image"]
    python, flag, script, url, user_id, timeout = c["command"]
    assert (python, flag) == ("python", "-c")
    assert script == (CHART / "files" / "helm-test.py").read_text()
    assert url == "http://rel-recengine-api:8080"
    assert (user_id, timeout) == ("helm-test", "10")
    tuned = helm_test_pod(rendered["scheduling-values.yaml"])["spec"]["containers"][0]
    assert tuned["command"][4:] == ["smoke-test-user", "5"]


def test_helm_test_pod_is_rendered_only_when_enabled(helm: str):
    docs = render(helm, "--set", "helmTest.enabled=false")
    assert not [d for d in docs if d["kind"] == "Pod"]


@pytest.mark.process
def test_helm_test_script_passes_against_a_ready_api_and_fails_otherwise(rendered, services):
    """The test Pod's own command, run against the API and index under real gunicorn."""
    command = helm_test_pod(rendered["default-values.yaml"])["spec"]["containers"][0]["command"]
    script = command[2]
    ok = subprocess.run([sys.executable, "-c", script, services.api, "helm-test", "10"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "GET /readyz -> 200" in ok.stdout
    assert "based on popular" in ok.stdout  # an unknown user gets popular items
    refused = subprocess.run([sys.executable, "-c", script, f"http://127.0.0.1:{free_port()}",
                              "helm-test", "2"], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "FAIL GET /readyz" in refused.stderr


def test_network_policies_open_api_close_trainer_and_limit_index(rendered):
    policies = by_kind(rendered["default-values.yaml"], "NetworkPolicy")
    api = policies["rel-recengine-api"]["spec"]
    assert api["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert policies["rel-recengine-trainer"]["spec"]["ingress"] == []
    (rule,) = policies["rel-recengine-index"]["spec"]["ingress"]
    sources = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
               for peer in rule["from"]}
    assert sources == {"api", "operator"}
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress stays open


def test_grafana_gets_the_graphite_datasource_by_uid(rendered):
    docs = rendered["default-values.yaml"]
    provisioning = by_kind(docs, "ConfigMap")["rel-recengine-grafana"]["data"]
    (source,) = yaml.safe_load(provisioning["datasources.yaml"])["datasources"]
    assert source["uid"] == "recengine-graphite"
    assert source["type"] == "graphite"
    assert source["url"] == "http://rel-recengine-graphite:8080"
    production = rendered["production-values.yaml"]
    assert "rel-recengine-grafana" not in by_kind(production, "Deployment")
    assert "rel-recengine-dashboards" in by_kind(production, "ConfigMap")


def test_dashboards_configmap_holds_every_dashboard_file(helm: str, tmp_path: Path):
    chart = tmp_path / "recengine"
    shutil.copytree(CHART, chart)
    for old in (chart / "dashboards").glob("*.json"):
        old.unlink()
    empty = by_kind(render(helm, chart=chart), "ConfigMap")["rel-recengine-dashboards"]
    assert not empty.get("data")
    for name in ("overview", "trainer"):
        (chart / "dashboards" / f"{name}.json").write_text(
            json.dumps({"title": name, "panels": []}))
    full = by_kind(render(helm, chart=chart), "ConfigMap")["rel-recengine-dashboards"]
    assert set(full["data"]) == {"overview.json", "trainer.json"}
    assert json.loads(full["data"]["trainer.json"])["title"] == "trainer"
    assert full["metadata"]["labels"]["grafana_dashboard"] == "1"


def render_notes(helm: str, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` would print it (which needs a cluster even in dry-run)."""
    chart = tmp_path / "recengine"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n"
        '{{ include (print $.Template.BasePath "/NOTES.txt") . | indent 4 }}\n')
    docs = render(helm, "--show-only", "templates/zz-notes.yaml", *args, chart=chart)
    return docs[0]["data"]["notes"]


def test_notes_tell_how_to_reach_the_api_and_grafana(helm: str, tmp_path: Path):
    notes = render_notes(helm, tmp_path / "default")
    assert "port-forward svc/rel-recengine-api 8080:8080" in notes
    assert "port-forward svc/rel-recengine-grafana 3000:3000" in notes
    assert "helm test rel --namespace recs --logs" in notes
    notes = render_notes(helm, tmp_path / "production", "-f",
                         str(CHART / "ci" / "production-values.yaml"))
    assert "https://recommend.example.com/recommend" in notes
    assert "grafana_dashboard" in notes


# --- values.yaml documentation and schema -----------------------------------------------------

def _value_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _value_paths(value, path)


def test_every_values_key_has_a_param_comment():
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param ([\w.-]+) \S", text, re.MULTILINE))
    values = yaml.safe_load(text)
    missing = []
    for path in _value_paths(values):
        node = values
        for part in path.split("."):
            node = node[part]
        if isinstance(node, dict) and node:
            continue  # a section: its keys are checked one by one
        parts = path.split(".")
        # A leaf needs its own @param, or an ancestor's (a structured default such as
        # podSecurityContext is documented as a whole).
        if not {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & documented:
            missing.append(path)
    assert not missing, f"values without ## @param: {missing}"
    assert not documented - set(_value_paths(values)), "## @param for keys that do not exist"


def test_schema_and_readme_parameters_are_generated_from_the_param_lines():
    """values.schema.json and the README's "Parameters" tables are what readme-generator-for-helm
    and values.schema.constraints.yaml make of values.yaml (tools/gen_chart_docs.py)."""
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_chart_docs.py"), "--check"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    table = (CHART / "README.md").read_text().split("\n## Parameters\n", 1)[1]
    rows = dict(re.findall(r"^\| `([\w.-]+)` +\|.*\| `(.*)` +\|$", table, re.MULTILINE))
    assert rows["index.probes.startup.failureThreshold"] == "120"
    assert rows["api.probes.readiness.httpGet.path"] == "/readyz"
    assert rows["api.pdb.minAvailable"] == "1"
    assert rows["helmTest.userId"] == "helm-test"


def test_schema_declares_every_values_key_and_closes_every_section():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def check(node: Any, sub: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or "properties" not in sub:
            return
        assert sub.get("additionalProperties") is False, f"{path or '(top)'} is open"
        for key, value in node.items():
            assert key in sub["properties"], f"{path}.{key} missing from the schema"
            check(value, sub["properties"][key], f"{path}.{key}" if path else key)

    check(values, schema, "")


# --- the CRD --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD.read_text())


def test_crd_names_scope_and_version(crd):
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "recengines.recengine.io"
    assert spec["group"] == "recengine.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "RecEngine"
    assert spec["names"]["plural"] == "recengines"
    assert spec["names"]["shortNames"] == ["rec"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_crd_printer_columns(crd):
    columns = {c["name"]: c["jsonPath"]
               for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns == {"Policy": ".spec.embedding.policy", "Current": ".status.currentVersion",
                       "Target": ".status.targetVersion", "Phase": ".status.phase",
                       "Age": ".metadata.creationTimestamp"}


def test_crd_schema_validates_the_spec_contract(crd):
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    assert set(spec["required"]) == {"artifacts", "index"}
    artifacts = spec["properties"]["artifacts"]
    assert artifacts["required"] == ["secretRef"]
    assert artifacts["properties"]["secretRef"]["type"] == "string"
    index = spec["properties"]["index"]
    assert index["required"] == ["deployment"]
    deadline = index["properties"]["progressDeadlineSeconds"]
    assert (deadline["type"], deadline["minimum"], deadline["default"]) == ("integer", 10, 300)
    embedding = spec["properties"]["embedding"]
    policy = embedding["properties"]["policy"]
    assert (policy["enum"], policy["default"]) == (["Latest", "Pinned"], "Latest")
    version = embedding["properties"]["version"]
    assert (version["type"], version["minimum"]) == ("integer", 1)
    (rule,) = embedding["x-kubernetes-validations"]
    # Pinned needs a version; `!has(self.policy)` keeps the rule valid on the defaulted empty
    # embedding object, which a real API server evaluates before nested defaults exist.
    assert rule["rule"] in ("self.policy != 'Pinned' || has(self.version)",
                            "!has(self.policy) || self.policy != 'Pinned' || has(self.version)")
    gate = embedding["properties"]["qualityGate"]["properties"]
    assert (gate["metric"]["type"], gate["metric"]["default"]) == ("string", "recall_at_10")
    assert (gate["maxDrop"]["type"], gate["maxDrop"]["minimum"], gate["maxDrop"]["maximum"],
            gate["maxDrop"]["default"]) == ("number", 0, 1, 0.05)
    assert (gate["minEvaluated"]["type"], gate["minEvaluated"]["default"]) == ("integer", 1000)


def test_crd_status_is_open_but_documented(crd):
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert {"currentVersion", "targetVersion", "lastGoodVersion", "phase", "conditions",
            "history", "observedGeneration"} <= set(status["properties"])


def test_kopf_peering_crd_is_namespaced():
    crd = yaml.safe_load((CHART / "crds" / "kopf.dev_kopfpeerings.yaml").read_text())
    assert crd["metadata"]["name"] == "kopfpeerings.kopf.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == "KopfPeering"


# --- skaffold.yaml --------------------------------------------------------------------------------

def test_skaffold_builds_every_target_and_deploys_this_chart():
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert re.fullmatch(r"skaffold/v4beta(1[1-9]|[2-9]\d)", config["apiVersion"])
    assert config["kind"] == "Config"
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    dockerfile_text = {}
    for image, artifact in artifacts.items():
        context = ROOT / artifact.get("context", ".")
        dockerfile = context / artifact["docker"]["dockerfile"]
        assert context.is_dir(), image
        assert dockerfile.is_file(), image
        text = dockerfile_text.setdefault(dockerfile, dockerfile.read_text())
        target = artifact["docker"]["target"]
        assert re.search(rf"^FROM\s+\S+\s+AS\s+{re.escape(target)}\s*$", text,
                         re.MULTILINE | re.IGNORECASE), f"{image}: no stage {target}"
    assert {a["docker"]["target"] for a in artifacts.values()} == {
        "api", "index", "trainer", "operator"}
    (release,) = config["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    for values_file in release.get("valuesFiles", []):
        assert (ROOT / values_file).is_file()
    templates = release["setValueTemplates"]
    for image in artifacts:
        role = image.removeprefix("recengine-")
        key = re.sub(r"[^A-Za-z0-9]", "_", image)
        assert templates[f"{role}.image.repository"] == f"{{{{.IMAGE_REPO_{key}}}}}"
        assert templates[f"{role}.image.tag"] == f"{{{{.IMAGE_TAG_{key}}}}}"
