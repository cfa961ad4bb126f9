"""docker-compose.yml, the Dockerfiles and deploy/k8s/ are checked here, offline: no Docker
engine or cluster runs on this machine. Compose against the Compose specification's JSON
schema (the copy check-jsonschema vendors), Kubernetes manifests with kubernetes-validate,
every service's environment through the settings object, every command's module."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from botify.models import trained_models
from botify.settings import REPO_DIR, Settings
from services.api.app import build_router

COMPOSE = REPO_DIR / "docker-compose.yml"
K8S = REPO_DIR / "deploy" / "k8s"
DOCKERFILES = {
    "api": REPO_DIR / "deploy" / "Dockerfile",
    "trainer": REPO_DIR / "deploy" / "Dockerfile.trainer",
}
K8S_VERSION = "1.31.0"
BOTIFY_SERVICES = ("api", "stream", "trainer")
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")
_REQUIRED = re.compile(r"\$\{(\w+):\?([^}]*)\}")
# What an operator exports before `docker compose up` (the file's header says so).
SECRETS = {"BOTIFY_API_KEY": "key-1", "BOTIFY_REDIS_PASSWORD": "pw-1"}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def cluster_env() -> dict[str, str]:
    lines = (REPO_DIR / "deploy" / "cluster.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(value: object, env: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}`` and ``${VAR:?error}``, as ``docker compose`` resolves
    them (a missing required variable is an error)."""

    def required(m: re.Match[str]) -> str:
        if not env.get(m.group(1)):
            raise KeyError(f"{m.group(1)}: {m.group(2)}")
        return env[m.group(1)]

    text = _REQUIRED.sub(required, str(value))
    return _DEFAULT.sub(lambda m: env.get(m.group(1), m.group(2)), text)


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a process with exactly these BOTIFY_* variables builds."""
    sections = set(Settings.model_fields)
    for key in env:
        # Settings ignores unknown top-level names: a typo would pass silently.
        assert key.startswith("BOTIFY_"), key
        assert key.removeprefix("BOTIFY_").split("__")[0].lower() in sections, key
    for key in [k for k in os.environ if k.startswith("BOTIFY_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def module_of(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


# -- compose -----------------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text())  # type: ignore[no-any-return]


def test_compose_file_follows_the_compose_specification() -> None:
    # The specification's schema is draft 7 (its $schema URL lacks the '#' jsonschema keys on).
    validator = jsonschema.Draft7Validator(compose_schema())
    validator.validate(compose())
    broken = copy.deepcopy(compose())
    broken["services"]["api"]["replica"] = 3  # not a compose key: the check has teeth
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


@pytest.mark.parametrize("env", [{}, cluster_env()], ids=["single", "cluster"])
def test_every_botify_service_environment_parses_into_settings(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = bool(env)
    env = {**env, **SECRETS}
    for name in BOTIFY_SERVICES:
        service = compose()["services"][name]
        variables = {k: interpolate(v, env) for k, v in service["environment"].items()}
        settings = settings_from(variables, monkeypatch)
        assert settings.redis.url == "redis://redis:6379/0"
        assert settings.redis.password is not None
        assert settings.redis.password.get_secret_value() == "pw-1"
        assert [k.get_secret_value() for k in settings.api.api_keys] == ["key-1"]
        if cluster:
            assert settings.kafka.replication_factor == 3
            assert settings.kafka.min_insync_replicas == 2
            assert settings.kafka.bootstrap_servers.count(":9092") == 3


def test_compose_refuses_to_start_without_its_secrets_and_wires_them_everywhere() -> None:
    services = compose()["services"]
    with pytest.raises(KeyError, match="BOTIFY_API_KEY"):
        interpolate(services["api"]["environment"]["BOTIFY_API__API_KEYS"], {})
    redis_command = [interpolate(part, SECRETS) for part in services["redis"]["command"]]
    assert redis_command[redis_command.index("--requirepass") + 1] == "pw-1"
    assert "botify_api_key" in services["prometheus"]["secrets"]
    assert compose()["secrets"]["botify_api_key"] == {"environment": "BOTIFY_API_KEY"}
    scrape = yaml.safe_load((REPO_DIR / "deploy" / "prometheus.yml").read_text())
    api_job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "botify-api")
    assert api_job["authorization"]["credentials_file"] == "/run/secrets/botify_api_key"
    # Only loopback may reach the dashboards.
    for name in ("prometheus", "grafana"):
        assert all(p.startswith("127.0.0.1:") for p in services[name]["ports"]), name


def test_compose_scales_the_api_behind_the_load_balancer_and_keeps_one_trainer() -> None:
    services = compose()["services"]
    assert "ports" not in services["api"]  # replicas cannot share a host port
    assert services["lb"]["ports"][0].startswith("8000:")
    assert services["trainer"]["container_name"]  # a fixed name: it cannot be scaled
    for name, service in services.items():
        assert "healthcheck" in service, name
        assert service.get("restart") == "unless-stopped", name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency]
    assert any(v.startswith("kafka-1:") for v in services["kafka"]["volumes"])
    assert "--appendonly" in services["redis"]["command"]
    cluster = [n for n, s in services.items() if "cluster" in s.get("profiles", [])]
    assert sorted(cluster) == ["kafka-2", "kafka-3"]


def test_compose_commands_and_health_checks_name_modules_that_exist() -> None:
    for name in BOTIFY_SERVICES:
        service = compose()["services"][name]
        for command in (service["command"], service["healthcheck"]["test"][1:]):
            module = module_of(command)
            assert importlib.util.find_spec(module) is not None, (name, module)


def test_default_experiments_serve_exactly_the_models_the_trainer_trains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Served but not trained: an arm stuck on its fallback. Trained but not served: trainer
    # rounds spent on a model nobody sees. A newly registered model fails here until the
    # deploy experiments give it an arm.
    for name, variables in (
        ("compose", compose()["services"]["trainer"]["environment"]),
        ("kubernetes", _config()),
    ):
        env = {k: interpolate(v, SECRETS) for k, v in variables.items()}
        env["BOTIFY_EXPERIMENTS__PATH"] = str(REPO_DIR / "deploy" / "experiments.toml")
        settings = settings_from(env, monkeypatch)
        _, context = build_router(settings)
        served = set(context.models)
        trained = trained_models(settings.trainer)
        assert served and served == set(trained), (name, served, trained)


# -- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_images_are_multi_stage_non_root_healthchecked_and_pinned(image: str) -> None:
    text = DOCKERFILES[image].read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1))
    # Dependencies are installed before the source is copied (layer caching).
    assert text.index("pip install -r requirements.txt") < text.index("COPY botify ")
    assert re.search(r"^USER botify$", text, re.M)
    healthcheck = re.search(r"CMD (\[.*\])\s*$", text.split("HEALTHCHECK", 1)[1], re.M)
    assert healthcheck is not None
    cmd = re.findall(r"^CMD (\[.*\])$", text, re.M)[-1]
    for command in (json.loads(healthcheck.group(1)), json.loads(cmd)):
        assert importlib.util.find_spec(module_of(command)) is not None, command
    instructions = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert ("torch" in instructions) == (image == "trainer")


def test_dockerignore_keeps_the_build_context_to_what_images_install() -> None:
    ignored = set((REPO_DIR / ".dockerignore").read_text().split())
    assert {".git", ".venv", "runs", "tests"} <= ignored


# -- Kubernetes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), list(manifests()), ids=[n for n, _ in manifests()])
def test_kubernetes_manifests_validate(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_validation_has_teeth() -> None:
    _, deployment = next((n, d) for n, d in manifests() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _pods() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, doc in manifests():
        if doc["kind"] == "Deployment":
            yield name, doc["spec"]["template"]["spec"]


def _config() -> dict[str, str]:
    docs = dict(manifests())
    return {
        **docs["configmap.yaml:ConfigMap/botify-settings"]["data"],
        **docs["secret.yaml:Secret/botify-credentials"]["stringData"],
    }


def test_kubernetes_pods_settings_parse_and_commands_name_modules_that_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, pod in _pods():
        for container in pod["containers"]:
            env = {**_config(), **{e["name"]: e["value"] for e in container.get("env", [])}}
            settings = settings_from(env, monkeypatch)
            assert settings.models.dir.is_absolute(), name  # on the shared claim
            commands = [container["command"]] + [
                probe["exec"]["command"]
                for key in ("readinessProbe", "livenessProbe")
                if "exec" in (probe := container.get(key, {}))
            ]
            for command in commands:
                assert importlib.util.find_spec(module_of(command)) is not None, (name, command)


def test_kubernetes_api_probes_health_scales_and_reads_the_trainers_models() -> None:
    docs = dict(manifests())
    api = docs["api.yaml:Deployment/botify-api"]["spec"]["template"]["spec"]
    (container,) = api["containers"]
    # Ready: backends and delivery healthy. Alive: the process answers (a broker outage
    # must not restart pods and lose the events they hold).
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/"
    hpa = docs["api.yaml:HorizontalPodAutoscaler/botify-api"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "botify-api"
    stream = docs["stream.yaml:Deployment/botify-stream"]["spec"]
    partitions = int(
        docs["configmap.yaml:ConfigMap/botify-settings"]["data"]["BOTIFY_KAFKA__PARTITIONS"]
    )
    assert stream["replicas"] <= partitions  # more workers than partitions would idle
    trainer = docs["trainer.yaml:Deployment/botify-trainer"]["spec"]
    assert trainer["replicas"] == 1 and trainer["strategy"]["type"] == "Recreate"
    claims = {
        n: {
            v["persistentVolumeClaim"]["claimName"]
            for v in pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        for n, pod in _pods()
    }
    assert (
        claims["api.yaml:Deployment/botify-api"]
        == claims["trainer.yaml:Deployment/botify-trainer"]
        == {"botify-models"}
    )
    experiments = docs["configmap.yaml:ConfigMap/botify-experiments"]["data"]["experiments.toml"]
    assert experiments == (REPO_DIR / "deploy" / "experiments.toml").read_text()
