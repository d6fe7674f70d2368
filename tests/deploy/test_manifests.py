"""The deployment files: compose/, deploy/kubernetes/, deploy/systemd/, the Dockerfile.

CI has no Docker engine, no Kubernetes cluster and no systemd to try them on,
so these tests are the only check they get before a user runs them. They
validate each file against the schema its tool uses (the compose-spec schema
vendored by check-jsonschema, the Kubernetes OpenAPI schemas vendored by
kubernetes-validate: no network at test time) and then assert what the
runtime relies on: a shutdown grace longer than the node's drain timeout,
probes on the node's HTTP endpoints, credentials only from Secrets, one image
built the way scripts/setup installs the package.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
SYSTEMD_UNIT = REPO / "deploy" / "systemd" / "roger-node@.service"
SYSTEMD_ENV = REPO / "deploy" / "systemd" / "roger-node.env.example"
DOCKERFILE = REPO / "Dockerfile"

# The oldest Kubernetes minor still in wide use; the manifests use nothing newer.
KUBERNETES_VERSION = "1.30"
HTTP_PORT = 8080


# --- small parsers ------------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), f"{path}: a document is not a mapping"
    return docs


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|h|min|m|s)?")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def seconds(text: str | int) -> float:
    """A Compose (`1m30s`) or systemd (`45`, `45s`, `1min 30s`) time span, in seconds."""
    spec = str(text).replace(" ", "")
    parts = list(_DURATION.finditer(spec))
    assert parts and "".join(p.group(0) for p in parts) == spec, f"not a duration: {text!r}"
    return sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)


def port_of(listen: str) -> int:
    """The port of a HOST:PORT address such as ROGER_HTTP."""
    return int(listen.rpartition(":")[2])


def parse_systemd_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with all its values in order (systemd allows repeats)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep, f"not a unit file line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            found.append((instruction.upper(), args.strip()))
    return found


def dockerfile_args(instruction: str, path: Path = DOCKERFILE) -> list[str]:
    return [args for name, args in parse_dockerfile(path.read_text()) if name == instruction]


def exec_form(args: str) -> list[str]:
    form = json.loads(args)
    assert isinstance(form, list) and all(isinstance(a, str) for a in form), f"not exec form: {args}"
    return form


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


# --- compose/ -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def built_from_repo_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if not isinstance(build, dict):
        return False
    context = (COMPOSE_FILE.parent / str(build.get("context", "."))).resolve()
    return context == REPO and context / str(build.get("dockerfile", "Dockerfile")) == DOCKERFILE


def node_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services that run the image's own entrypoint, roger-node."""
    return {
        name: svc
        for name, svc in services.items()
        if built_from_repo_dockerfile(svc) and "entrypoint" not in svc
    }


def container_ports(service: dict[str, Any]) -> set[int]:
    # Short syntax: [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL]; long syntax: target.
    return {
        int(p["target"]) if isinstance(p, dict) else int(str(p).split("/")[0].rsplit(":", 1)[-1])
        for p in service.get("ports", [])
    }


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    assert schema_errors(get_builtin_schema("vendor.compose-spec"), compose) == []


def test_the_compose_schema_check_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["node1"]["helthcheck"] = broken["services"]["node1"].pop("healthcheck")
    assert schema_errors(get_builtin_schema("vendor.compose-spec"), broken) != []


def test_rabbitmq_runs_with_its_management_console(services: dict[str, dict[str, Any]]) -> None:
    rabbitmq = services["rabbitmq"]
    assert "management" in rabbitmq["image"]
    assert {5672, 15672} <= container_ports(rabbitmq)
    assert "healthcheck" in rabbitmq


def test_etcd_runs_with_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    etcd = services["etcd"]
    assert "etcd" in etcd["image"]
    assert 2379 in container_ports(etcd)
    assert "healthcheck" in etcd


def test_three_nodes_are_built_from_the_repository_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    nodes = node_services(services)
    assert len(nodes) == 3, sorted(nodes)
    names = {svc["environment"]["ROGER_NODE_NAME"] for svc in nodes.values()}
    assert len(names) == 3, "every node needs a name of its own"
    for name, svc in nodes.items():
        assert svc["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name
        assert svc["depends_on"]["etcd"]["condition"] == "service_healthy", name
        assert svc["environment"]["ROGER_AMQP_URL"].startswith("amqp://"), name
        assert svc["environment"]["ROGER_ETCD"].startswith("etcd:"), name


def test_nodes_get_longer_to_stop_than_their_drain_timeout(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in node_services(services).items():
        timeout = float(svc["environment"]["ROGER_SHUTDOWN_TIMEOUT"])
        assert seconds(svc["stop_grace_period"]) > timeout, name


def test_nodes_have_a_healthcheck_on_their_http_port(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in node_services(services).items():
        port = port_of(svc["environment"]["ROGER_HTTP"])
        command = healthcheck_command(svc)
        assert "urllib" in command, name
        assert re.search(rf"http://127\.0\.0\.1:{port}/(healthz|readyz)\b", command), command
        assert svc["healthcheck"].get("disable") is not True, name


def test_demo_starts_partition_myapp_and_enqueues_demo_jobs(services: dict[str, dict[str, Any]]) -> None:
    demo = services["demo"]
    assert built_from_repo_dockerfile(demo)
    assert demo["restart"] == "no", "the demo is one shot"
    assert demo["healthcheck"]["disable"] is True, "rogerctl serves no /healthz"
    assert set(node_services(services)) <= set(demo["depends_on"])
    script = "\n".join(demo["command"]) if isinstance(demo["command"], list) else demo["command"]
    # The same demo as the local `scripts/demo` (testing/cluster.py calls cli/demo.py's run_demo).
    assert re.search(r"^\s*python -m roger_cluster\.cli\.demo --partition myapp$", script, re.M), script
    from roger_cluster import demo as demo_jobs
    from roger_cluster.cli import demo as cli_demo

    assert cli_demo.PARTITION == "myapp"
    for job in (demo_jobs.Sleep, demo_jobs.Hello):
        assert job.__module__ in demo["environment"]["ROGER_JOBS"].split(","), job
        assert hasattr(importlib.import_module(job.__module__), job.__name__), job


# --- deploy/kubernetes/ -------------------------------------------------------------------------


def kubernetes_files() -> list[Path]:
    return sorted(p for p in KUBERNETES_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    return [doc for path in kubernetes_files() for doc in load_yaml_documents(path)]


def the_one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def node_container(resources: list[dict[str, Any]]) -> dict[str, Any]:
    containers = the_one(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container = containers[0]
    assert isinstance(container, dict)
    return container


def env_of(container: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The container's environment: ConfigMap values (envFrom), then env entries as written."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        config_map = next(r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name)
        env.update(config_map["data"])
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return env


@pytest.mark.parametrize("path", kubernetes_files(), ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schema(path: Path) -> None:
    docs = load_yaml_documents(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(map(str, e.path))
            pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {where}: {e.message}")


def test_the_kubernetes_schema_check_catches_a_misspelt_key(resources: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(the_one(resources, "Deployment"))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_names_the_image(node_container: dict[str, Any]) -> None:
    kustomization = load_yaml(KUBERNETES_DIR / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in kubernetes_files()]
    assert node_container["image"] in {image["name"] for image in kustomization["images"]}


def test_termination_grace_period_is_above_the_shutdown_timeout(
    resources: list[dict[str, Any]], node_container: dict[str, Any]
) -> None:
    pod = the_one(resources, "Deployment")["spec"]["template"]["spec"]
    timeout = float(env_of(node_container, resources)["ROGER_SHUTDOWN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > timeout
    assert "preStop" not in node_container.get("lifecycle", {}), "roger-node handles SIGTERM itself"


def test_a_pod_disruption_budget_covers_the_nodes(resources: list[dict[str, Any]]) -> None:
    deployment = the_one(resources, "Deployment")
    pdb = the_one(resources, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < pdb["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


def test_credentials_come_from_a_secret(
    resources: list[dict[str, Any]], node_container: dict[str, Any]
) -> None:
    env = env_of(node_container, resources)
    ref = env["ROGER_AMQP_URL"]["secretKeyRef"]
    secret = next(r for r in resources if r["kind"] == "Secret" and r["metadata"]["name"] == ref["name"])
    assert ref["key"] in secret["stringData"]
    for config_map in (r for r in resources if r["kind"] == "ConfigMap"):
        for key, value in config_map["data"].items():
            assert not re.search(r"PASSWORD|TOKEN|SECRET|AMQP_URL", key), key
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{key} holds credentials"


def test_probes_hit_the_node_http_endpoints(
    resources: list[dict[str, Any]], node_container: dict[str, Any]
) -> None:
    ports = {p["name"]: p["containerPort"] for p in node_container["ports"]}
    assert ports["http"] == HTTP_PORT
    assert port_of(env_of(node_container, resources)["ROGER_HTTP"]) == HTTP_PORT
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = node_container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == HTTP_PORT, probe


def test_pods_run_as_the_image_user(resources: list[dict[str, Any]]) -> None:
    security = the_one(resources, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == dockerfile_args("USER")[-1].split(":")[0]


def test_the_partitions_job_starts_partitions_if_absent_with_the_nodes_image_and_settings(
    resources: list[dict[str, Any]], node_container: dict[str, Any]
) -> None:
    job = the_one(resources, "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0, "a finished Job must go, or the next apply fails"
    [container] = pod["containers"]
    assert container["image"] == node_container["image"]
    assert container["envFrom"] == node_container["envFrom"]
    amqp_url = env_of(node_container, resources)["ROGER_AMQP_URL"]
    assert env_of(container, resources)["ROGER_AMQP_URL"] == amqp_url
    assert str(pod["securityContext"]["runAsUser"]) == dockerfile_args("USER")[-1].split(":")[0]
    script = "\n".join(container["args"])
    lines = [shlex.split(line) for line in script.splitlines() if line.strip()]
    assert lines and all(line[:3] == ["rogerctl", "partition", "start"] for line in lines), script
    from roger_cluster.cli import ctl

    for line in lines:
        args = ctl.parser().parse_args(line[1:])  # the real parser: a typo would exit 2
        assert args.if_absent, line
        ctl.parse_queues(args.queues)


# --- deploy/systemd/ ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_systemd_unit(SYSTEMD_UNIT.read_text())


def test_systemd_unit_restarts_on_failure_and_stops_with_sigterm(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    service = unit["Service"]
    assert service["Restart"] == ["on-failure"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["ExecStart"][-1].split()[0].endswith("/roger-node")
    assert "ROGER_NODE_NAME=%i" in service["Environment"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_waits_longer_than_the_shutdown_timeout(unit: dict[str, dict[str, list[str]]]) -> None:
    env = parse_env_file(SYSTEMD_ENV)
    assert "ROGER_NODE_NAME" not in env, "it would override the instance name"
    assert seconds(unit["Service"]["TimeoutStopSec"][-1]) > float(env["ROGER_SHUTDOWN_TIMEOUT"])


# --- Dockerfile ---------------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_image_is_a_slim_python_the_package_supports() -> None:
    (base,) = dockerfile_args("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(?:-\w+)?", base)
    assert match, base
    minimum = re.search(r">=\s*(\d+)\.(\d+)", pyproject()["project"]["requires-python"])
    assert minimum
    assert (int(match[1]), int(match[2])) >= (int(minimum[1]), int(minimum[2]))


def test_image_installs_the_package_as_scripts_setup_does() -> None:
    # scripts/setup (the README's set-up) installs the project from its
    # pyproject with pip; the image does the same, without the test extra.
    setup = (REPO / "scripts" / "setup").read_text()
    assert re.search(r"pip install (-\S+ )*-e '\.\[test\]'", setup)
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in dockerfile_args("RUN"))


def copied_sources() -> Iterator[str]:
    for args in dockerfile_args("COPY"):
        yield from (a for a in args.split()[:-1] if not a.startswith("--"))


def test_image_copies_what_the_build_needs() -> None:
    needed = {"pyproject.toml", pyproject()["project"]["readme"], "roger_cluster"}
    assert needed <= set(copied_sources())
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    for path in needed:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored if pattern), path


def test_image_runs_roger_node_as_a_numeric_non_root_user() -> None:
    user = dockerfile_args("USER")[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), "numeric, so runAsNonRoot can check it"
    assert int(user.split(":")[0]) != 0
    assert exec_form(dockerfile_args("ENTRYPOINT")[-1]) == ["roger-node"]
    assert dockerfile_args("STOPSIGNAL") == ["SIGTERM"]


def test_image_has_a_healthcheck_on_healthz() -> None:
    env = " ".join(dockerfile_args("ENV"))
    assert f"ROGER_HTTP=0.0.0.0:{HTTP_PORT}" in env.split()
    assert str(HTTP_PORT) in " ".join(dockerfile_args("EXPOSE")).split()
    (healthcheck,) = dockerfile_args("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert all(o.startswith("--") for o in options.split()), options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2]
    assert "http://127.0.0.1:" in argv[2] and "/healthz" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


# --- examples/docker/ ---------------------------------------------------------------------------

APP_DOCKERFILE = REPO / "examples" / "docker" / "Dockerfile"


def test_the_app_image_recipe_builds_on_the_project_image_and_runs_the_apps_jobs() -> None:
    def args(instruction: str) -> list[str]:
        return dockerfile_args(instruction, APP_DOCKERFILE)

    (base_arg,) = args("ARG")
    name, _, default = base_arg.partition("=")
    assert args("FROM") == [f"${{{name}}}"]
    kustomization = load_yaml(KUBERNETES_DIR / "kustomization.yaml")
    assert default.split(":") == ["roger-cluster", pyproject()["project"]["version"]]
    assert default.split(":")[0] in {image["name"] for image in kustomization["images"]}
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in args("RUN"))
    assert args("USER")[-1] == dockerfile_args("USER")[-1], "back to the base image's user"
    assert exec_form(args("ENTRYPOINT")[-1]) == ["roger-node"]
    cmd = exec_form(args("CMD")[-1])
    assert cmd[0] == "--jobs" and cmd[1]
