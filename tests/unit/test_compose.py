"""docker-compose.yml and the Dockerfile agree with the code, read statically (no Docker needed).

The compose file is read as `docker compose up` sees it with no .env: every `${VAR:-default}`
takes its default. Each container is identified by its command, checked against the real entry
points and settings classes, so a renamed variable or a typo in a module name fails here and not
as a process that silently runs on its localhost defaults.
"""

import argparse
import base64
import hashlib
import importlib
import importlib.util
import json
import re
import runpy
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from relay.settings import RelaySettings
from scripts.stack.images import IMAGES, TRACE_VIEWER
from shared.broker import address, node_urls
from shared.settings import CommonSettings
from shared.system import COMPONENT_NAMES, COMPONENTS, SERVICE_NAMES
from shared.topology import permissions

ROOT = Path(__file__).resolve().parents[2]
# The system's one declaration (shared/system.py): compose must run exactly these, on these ports.
SERVICES = SERVICE_NAMES
API_PORTS = {component.name: component.port for component in COMPONENTS}
BROKER = "rabbitmq"
OPERATIONS = ("prometheus", "trace-viewer")
OTEL_SETTINGS = {"OTEL_EXPORTER_OTLP_ENDPOINT"}

# `$$` is a literal dollar; `${VAR:-default}` and `${VAR-default}` take the default, `${VAR}` "".
_VARIABLE = re.compile(r"\$\$|\$\{\w+(?::?-(?P<default>[^}]*))?\}")


def _interpolate(value: Any) -> Any:
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: "$" if m[0] == "$$" else m["default"] or "", value)
    if isinstance(value, dict):
        return {key: _interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item) for item in value]
    return value


COMPOSE: dict[str, Any] = _interpolate(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))
CONTAINERS: dict[str, dict[str, Any]] = COMPOSE["services"]
DEFINITIONS = json.loads((ROOT / "deploy/rabbitmq/definitions.json").read_text())


def _process(container: str) -> tuple[str, str, str]:
    """(kind, service, module) of a Python container, from its command: kind is api, migration,
    relay or topology (the administrator's one-shot declaration of the broker topology)."""
    python, flag, module, *args = CONTAINERS[container]["command"]
    assert (python, flag) == ("python", "-m"), f"{container}: not `python -m <module>`"
    if module == "shared.topology":
        return "topology", "", module
    if module == "relay":
        return "relay", args[0] if args else "", module
    kind = "migration" if args == ["migrate"] else "api"
    return kind, module.removeprefix("services."), module


PYTHON = {name: _process(name) for name, spec in CONTAINERS.items() if "build" in spec}
ONE_SHOT = {name for name, (kind, _, _) in PYTHON.items() if kind in ("migration", "topology")}


def _containers(kind: str) -> dict[str, str]:
    """Container name -> service, for the Python containers of one kind."""
    return {name: service for name, (k, service, _) in PYTHON.items() if k == kind}


def _env(container: str) -> dict[str, str]:
    env = CONTAINERS[container].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def _settings_class(container: str) -> type[BaseSettings]:
    kind, service, _ = PYTHON[container]
    if kind == "relay":
        return RelaySettings
    if kind == "topology":
        return CommonSettings
    package = service if service == "dashboard" else f"services.{service}"
    settings: type[BaseSettings] = getattr(
        importlib.import_module(f"{package}.settings"), f"{service.title()}Settings"
    )
    return settings


def _networks(container: str) -> set[str]:
    return set(CONTAINERS[container].get("networks") or ["default"])


def _published(container: str) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port."""
    published = []
    for port in CONTAINERS[container].get("ports", []):
        if isinstance(port, dict):
            published.append(
                (port.get("host_ip", "0.0.0.0"), int(port["published"]), int(port["target"]))
            )
            continue
        *ip, host, target = str(port).partition("/")[0].rsplit(":", 2)
        published.append((ip[0] if ip else "0.0.0.0", int(host), int(target)))
    return published


def test_the_stack_has_the_broker_three_databases_and_the_processes_of_each_service() -> None:
    assert set(CONTAINERS) == {
        BROKER,
        *(f"postgres-{c}" for c in COMPONENT_NAMES),
        *(f"migrate-{c}" for c in COMPONENT_NAMES),
        "topology",
        *COMPONENT_NAMES,
        *(f"{s}-relay" for s in SERVICES),
        *OPERATIONS,
    }
    assert CONTAINERS["trace-viewer"]["profiles"] == ["tracing"]  # optional; the rest always
    assert all(
        "profiles" not in spec for name, spec in CONTAINERS.items() if name != "trace-viewer"
    )
    assert _containers("topology") == {"topology": ""}
    # Each Python container runs what its name says.
    assert _containers("api") == {c: c for c in COMPONENT_NAMES}
    assert _containers("relay") == {f"{s}-relay": s for s in SERVICES}
    assert _containers("migration") == {f"migrate-{c}": c for c in COMPONENT_NAMES}


def test_every_long_running_container_has_a_healthcheck() -> None:
    for name, spec in CONTAINERS.items():
        if name in ONE_SHOT:
            continue  # it exits instead of becoming healthy (next test)
        healthcheck = spec.get("healthcheck") or {}
        assert healthcheck.get("test") and not healthcheck.get("disable"), name
        assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name


def test_long_running_containers_come_back_and_migrations_run_once() -> None:
    for name, spec in CONTAINERS.items():
        if name in ONE_SHOT:
            assert spec.get("restart") == "no", name
            assert "healthcheck" not in spec, name
        else:
            # The chaos scripts kill containers and expect them back.
            assert spec.get("restart") == "unless-stopped", name


def test_python_processes_are_not_pid_1() -> None:
    # As its namespace's PID 1 a process cannot SIGKILL itself: shared/faults.py would not crash.
    for name in PYTHON:
        assert CONTAINERS[name].get("init") is True, name


def test_published_ports_do_not_collide_and_the_apis_are_on_their_ports() -> None:
    host_ports = [port for name in CONTAINERS for _, port, _ in _published(name)]
    assert len(host_ports) == len(set(host_ports))
    for service, port in API_PORTS.items():
        assert _published(service) == [("127.0.0.1", port, port)]
        assert _env(service)["HTTP_PORT"] == str(port)
    for name in CONTAINERS:
        if name.startswith("postgres-") or name in _containers("relay"):
            assert not _published(name), f"{name} must not be reachable from the host"


def test_only_the_containers_that_publish_ports_join_a_network_with_a_way_out() -> None:
    networks = COMPOSE["networks"]
    for name in CONTAINERS:
        outside = [n for n in _networks(name) if not (networks.get(n) or {}).get("internal")]
        assert bool(outside) == bool(_published(name)), (name, outside)


def test_every_command_runs_an_existing_module_with_arguments_its_parser_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Parsed(Exception):
        """Raised instead of running the process, once its arguments parsed."""

    parse_args = argparse.ArgumentParser.parse_args

    def parse_only(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        parse_args(parser, *args, **kwargs)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    for name, (kind, _, module) in PYTHON.items():
        assert importlib.util.find_spec(module) is not None, name
        if kind == "topology":
            continue  # a module with a __main__ block and no arguments: nothing to parse
        assert importlib.util.find_spec(f"{module}.__main__") is not None, name
        monkeypatch.setattr(sys, "argv", [module, *CONTAINERS[name]["command"][3:]])
        try:
            # What `python -m <module>` runs, stopped right after its parser accepted the args.
            runpy.run_module(module, run_name="__main__")
        except Parsed:
            continue
        except SystemExit as exc:
            pytest.fail(f"{name}: {module} rejects {sys.argv[1:]} (exit {exc.code})")
        pytest.fail(f"{name}: {module} parsed no arguments")


def test_every_variable_a_python_container_sets_is_a_setting_of_its_process() -> None:
    # The settings ignore unknown variables (extra="ignore"): a misspelled one is silently unused.
    for name in PYTHON:
        fields = set(_settings_class(name).model_fields)
        # OTEL_* are OpenTelemetry's own settings, read by its SDK (shared/tracing.py).
        unknown = {
            key for key in _env(name) if key.lower() not in fields and key not in OTEL_SETTINGS
        }
        assert not unknown, f"{name} sets {unknown}, not fields of {_settings_class(name)}"


def test_every_setting_the_container_needs_is_set_and_valid() -> None:
    needed = {
        "api": {"DATABASE_URL", "AMQP_URL", "HTTP_HOST", "HTTP_PORT"},
        "relay": {"DATABASE_URL", "AMQP_URL", "METRICS_PORT"},
        "migration": {"DATABASE_URL"},
        "topology": {"AMQP_URL"},
    }
    for name, (kind, _, _) in PYTHON.items():
        settings_class, env = _settings_class(name), _env(name)
        fields = settings_class.model_fields
        required = {field.upper() for field, info in fields.items() if info.is_required()}
        # Read case-insensitively, like the settings themselves.
        assert required | needed[kind] <= {key.upper() for key in env}, name
        settings: Any = settings_class.model_validate({k.lower(): v for k, v in env.items()})
        if kind == "api":
            assert settings.http_host == "0.0.0.0", f"{name} must listen beyond its loopback"
        if kind == "relay":
            assert settings.metrics_port, f"{name} needs /metrics for its healthcheck"


def test_each_process_uses_its_own_database_as_its_own_role() -> None:
    for name, (kind, service, _) in PYTHON.items():
        if kind == "topology":
            assert "DATABASE_URL" not in _env(name), f"{name} has no business in a database"
            continue
        url = make_url(_env(name)["DATABASE_URL"])
        database = _env(f"postgres-{service}")
        assert url.drivername == "postgresql+psycopg", name
        assert (url.host, url.port) == (f"postgres-{service}", 5432), name
        assert url.database == database["SERVICE_DB_NAME"] == f"saga_{service}", name
        assert url.username == database["SERVICE_DB_USER"] == service, name
        assert url.password == database["SERVICE_DB_PASSWORD"], name
        assert url.username != "postgres", name


def test_each_database_shares_a_network_only_with_its_service_relay_and_migration() -> None:
    for component in COMPONENT_NAMES:
        database = f"postgres-{component}"
        neighbours = {
            name
            for name in CONTAINERS
            if name != database and _networks(name) & _networks(database)
        }
        relay = {f"{component}-relay"} if component in SERVICES else set()
        assert neighbours == {component, *relay, f"migrate-{component}"}, database


def test_no_container_uses_the_guest_user() -> None:
    assert _env(BROKER)["RABBITMQ_DEFAULT_USER"] not in ("", "guest")
    assert "guest" not in {user["name"] for user in DEFINITIONS["users"]}
    for name, (kind, _, _) in PYTHON.items():
        if kind != "migration":
            # Without AMQP_URL a process falls back to the code's guest@127.0.0.1 default.
            assert urlsplit(_env(name)["AMQP_URL"]).username not in (None, "", "guest"), name


def _rabbit_sha256_matches(password: str, password_hash: str) -> bool:
    salted = base64.b64decode(password_hash)
    salt, digest = salted[:4], salted[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def test_each_process_uses_its_own_broker_user_with_the_password_the_broker_has() -> None:
    users = {user["name"]: user for user in DEFINITIONS["users"]}
    permissions = {(p["user"], p["vhost"]) for p in DEFINITIONS["permissions"]}
    assert {"name": "/"} in DEFINITIONS["vhosts"]
    for name, (kind, service, _) in PYTHON.items():
        if kind == "migration":
            assert "AMQP_URL" not in _env(name), f"{name} has no business on the broker"
            continue
        url = urlsplit(_env(name)["AMQP_URL"])
        if kind == "topology":
            assert url.username == _env(BROKER)["RABBITMQ_DEFAULT_USER"], "only the admin may"
            continue
        vhost = "/" if url.path in ("", "/") else unquote(url.path[1:])
        assert (url.scheme, url.hostname, url.port, vhost) == ("amqp", BROKER, 5672, "/"), name
        assert url.username == service, name
        user = users[service]
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert _rabbit_sha256_matches(unquote(url.password or ""), user["password_hash"]), name
        assert (service, "/") in permissions, name


def test_the_broker_imports_the_definitions_file_read_only() -> None:
    conf = (ROOT / "deploy/rabbitmq/rabbitmq.conf").read_text()
    (load_from,) = re.findall(r"^load_definitions\s*=\s*(\S+)", conf, re.MULTILINE)
    mounts = {}
    for volume in CONTAINERS[BROKER]["volumes"]:
        source, target, *mode = volume.split(":")
        mounts[source] = (target, mode)
    conf_target, conf_mode = mounts["./deploy/rabbitmq/rabbitmq.conf"]
    definitions_target, definitions_mode = mounts["./deploy/rabbitmq/definitions.json"]
    assert conf_target.startswith("/etc/rabbitmq/conf.d/") and conf_mode == ["ro"]
    assert Path(definitions_target).parent == Path(load_from) and definitions_mode == ["ro"]


def test_depends_on_waits_for_healthy_infrastructure_and_finished_migrations() -> None:
    expected = {
        **{name: {f"postgres-{s}"} for name, s in _containers("migration").items()},
        "topology": {BROKER},
        **{name: {f"migrate-{s}", "topology", BROKER} for name, s in _containers("api").items()},
        **{name: {f"migrate-{s}", "topology", BROKER} for name, s in _containers("relay").items()},
    }
    for name, spec in CONTAINERS.items():
        depends_on = spec.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        assert set(depends_on) == expected.get(name, set()), name
        for target, condition in depends_on.items():
            wanted = "service_completed_successfully" if target in PYTHON else "service_healthy"
            assert condition.get("condition") == wanted, (name, target)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_runs_as_a_user_and_installs_dependencies_before_the_source() -> None:
    instructions = _dockerfile_instructions()
    # The official image unless a build arg names a stand-in (deploy/images/).
    assert instructions[:2] == [
        ("ARG", "PYTHON_IMAGE=python:3.11-slim"),
        ("FROM", "${PYTHON_IMAGE}"),
    ]
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    copies = [args.split() for instruction, args in instructions if instruction == "COPY"]
    first_source = next(i for i, args in enumerate(copies) if args[0] != "pyproject.toml")
    assert ["pyproject.toml", "./"] in copies[:first_source]
    envs = " ".join(args for instruction, args in instructions if instruction in ("ENV", "ARG"))
    assert "PYTHONUNBUFFERED=1" in envs
    assert not re.search(r"PASSWORD|SECRET|TOKEN|amqp://|postgresql", envs, re.IGNORECASE)


def test_each_broker_user_may_touch_only_its_own_queues() -> None:
    granted = {
        p["user"]: (p["configure"], p["write"], p["read"]) for p in DEFINITIONS["permissions"]
    }
    assert granted == {name: permissions(name) for name in COMPONENT_NAMES}
    for name, (kind, _, _) in PYTHON.items():
        if kind in ("api", "relay"):
            # With narrowed permissions, declaring the whole topology would be refused.
            assert _env(name)["DECLARE_TOPOLOGY"] == "own", name


def test_every_image_is_a_setting_whose_default_is_the_official_image() -> None:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    settings = {image.variable: image.official for image in (*IMAGES, TRACE_VIEWER)}
    named = {raw["x-postgres"]["image"], raw["services"]["rabbitmq"]["image"]}
    named |= {raw["services"][name]["image"] for name in OPERATIONS}
    named.add(raw["x-image"]["build"]["args"]["PYTHON_IMAGE"])
    assert named == {f"${{{variable}:-{official}}}" for variable, official in settings.items()}
    # The stand-ins never carry an official image's name.
    assert not {image.stand_in for image in (*IMAGES, TRACE_VIEWER)} & set(settings.values())


def test_compose_prometheus_scrapes_each_process_on_its_port_with_the_shipped_rules() -> None:
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/compose.yml").read_text())
    [job] = scrape["scrape_configs"]
    targets = {c["labels"]["process"]: c["targets"] for c in job["static_configs"]}
    expected = {name: [f"{name}:{_env(name)['HTTP_PORT']}"] for name in _containers("api")}
    expected |= {name: [f"{name}:{_env(name)['METRICS_PORT']}"] for name in _containers("relay")}
    assert targets == expected
    mounts = {v.split(":")[1]: v.split(":")[0] for v in CONTAINERS["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/compose.yml"
    assert mounts[scrape["rule_files"][0]] == "./deploy/prometheus/alerts.yml"
    # Prometheus reaches every process on the broker network they all share.
    assert all("broker" in _networks(name) for name in expected)
    assert "broker" in _networks("prometheus")


def test_the_tracing_profile_points_every_process_at_the_viewer_only_when_asked() -> None:
    for name in PYTHON:
        if PYTHON[name][0] in ("api", "relay"):
            # Empty by default: nothing exported (shared/tracing.py); Compose(tracing=True) and
            # the README set SAGA_OTLP_ENDPOINT.
            assert _env(name)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "", name
    assert "broker" in _networks("trace-viewer")
    from scripts.stack.compose import OTLP_ENDPOINT, Compose

    traced = Compose(env={"SAGA_TRACE_VIEWER_HOST_PORT": "16006"}, tracing=True)
    assert traced.env["SAGA_OTLP_ENDPOINT"] == OTLP_ENDPOINT == "http://trace-viewer:6006"
    assert traced.env["SAGA_TRACE_URL"].startswith("http://127.0.0.1:16006/projects/")
    assert "SAGA_OTLP_ENDPOINT" not in Compose(env={}).env


CLUSTER: dict[str, Any] = _interpolate(
    yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
)
CLUSTER_NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")


def test_the_cluster_override_gives_every_broker_client_all_three_nodes_as_its_own_user() -> None:
    """docker-compose.cluster.yml: each process that reaches the broker in docker-compose.yml
    gets an AMQP_URL naming the three nodes, with the same user, password and vhost as before."""
    clients = {name for name in CONTAINERS if "AMQP_URL" in _env(name)}
    overridden = CLUSTER["services"]
    assert clients <= set(overridden), clients - set(overridden)
    for name in clients:
        env = overridden[name]["environment"]
        nodes = node_urls(env["AMQP_URL"])
        assert [address(node) for node in nodes] == [f"{n}:5672" for n in CLUSTER_NODES], name
        single = urlsplit(_env(name)["AMQP_URL"])
        for node in nodes:
            parts = urlsplit(node)
            assert (parts.username, parts.password, parts.path) == (
                single.username, single.password, single.path,
            ), name  # fmt: skip


def test_the_cluster_nodes_share_a_cookie_join_the_first_and_the_topology_waits_for_all() -> None:
    services = CLUSTER["services"]
    cookies = {services[node]["environment"]["SAGA_RABBITMQ_COOKIE"] for node in CLUSTER_NODES}
    assert len(cookies) == 1 and "" not in cookies
    for node in CLUSTER_NODES:
        mounts = [volume.split(":")[1] for volume in services[node]["volumes"]]
        assert "/etc/rabbitmq/conf.d/95-cluster.conf" in mounts, node
    assert set(services["topology"]["depends_on"]) >= set(CLUSTER_NODES) - {BROKER}
    assert (
        "cluster_partition_handling = pause_minority"
        in (ROOT / "deploy/rabbitmq/cluster.conf").read_text()
    )
    # The first node forms the cluster alone; the other two join it once it is healthy.
    join = (ROOT / "deploy/rabbitmq/cluster-join.conf").read_text()
    assert f"cluster_formation.classic_config.nodes.1 = rabbit@{BROKER}" in join
    assert "nodes.2" not in join
    for node in CLUSTER_NODES[1:]:
        mounts = [volume.split(":")[1] for volume in services[node]["volumes"]]
        assert "/etc/rabbitmq/conf.d/96-cluster-join.conf" in mounts, node
        assert services[node]["depends_on"][BROKER]["condition"] == "service_healthy", node
    assert "depends_on" not in services[BROKER]
