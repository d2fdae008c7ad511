"""The chaos tool's docker compose target, without Docker: the override file read statically,
and the `docker compose` commands the target runs, recorded by a stand-in `docker` on PATH.

The faults themselves are exercised for real on the no-Docker target (tests/e2e/test_chaos.py);
what is checked here is that the compose target asks Docker for the same faults, on the right
containers, with both compose files."""

import json
import os
import random
import re
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.chaos.faults import Chaos, Fault
from scripts.chaos.targets import ALARM, BROKER, DATABASE, LINK, ComposeTarget
from scripts.stack.compose import (
    AMQP_PORT,
    API_PORTS,
    BROKER_CONTAINER,
    CLUSTER_FILE,
    COMPOSE_FILES,
    DATABASE_PORTS,
    HOST_PORTS,
    Compose,
    ComposeError,
)
from scripts.stack.images import IMAGES
from scripts.stack.instances import free_port
from shared.system import PROCESSES, RELAYS, SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / COMPOSE_FILES[0]).read_text())
OVERRIDE = yaml.safe_load((ROOT / COMPOSE_FILES[1]).read_text())
CLUSTER = yaml.safe_load((ROOT / CLUSTER_FILE).read_text())


def test_the_override_publishes_each_database_on_localhost_and_changes_nothing_else() -> None:
    assert set(OVERRIDE) == {"services"}
    assert set(OVERRIDE["services"]) == {f"postgres-{service}" for service in SERVICE_NAMES}
    for service, port in DATABASE_PORTS.items():
        container = OVERRIDE["services"][f"postgres-{service}"]
        assert set(container) == {"ports", "networks"}
        assert container["ports"] == [f"127.0.0.1:${{{port.variable}:-{port.default}}}:5432"]
        # Compose appends sequences: the database keeps its own network and gains `public`,
        # the only network that is not internal and so can carry a published port.
        merged = BASE["services"][f"postgres-{service}"]["networks"] + container["networks"]
        assert merged == [f"{service}-db", "public"]
        assert not BASE["networks"]["public"].get("internal", False)


def test_every_chaos_component_is_a_container_of_the_compose_file() -> None:
    containers = set(BASE["services"])
    assert {*SERVICE_NAMES, *RELAYS, BROKER_CONTAINER} <= containers
    for name in [*SERVICE_NAMES, *RELAYS, BROKER_CONTAINER]:
        assert BASE["services"][name].get("restart") == "unless-stopped", name


def test_every_published_host_port_is_a_setting_with_the_usual_port_as_default() -> None:
    settings = {port.variable: port.default for port in HOST_PORTS}
    published = [
        str(port).rsplit(":", 1)[0]
        for spec in (BASE, OVERRIDE, CLUSTER)
        for container in spec["services"].values()
        for port in container.get("ports", [])
    ]
    assert published, "nothing published?"
    found = {}
    for host in published:
        match = re.fullmatch(r"127\.0\.0\.1:\$\{(SAGA_\w+_HOST_PORT):-(\d+)\}", host)
        assert match, f"{host}: a host port must be 127.0.0.1:${{SAGA_..._HOST_PORT:-default}}"
        found[match[1]] = int(match[2])
    assert found == settings


def test_every_container_that_publishes_a_port_joins_a_network_that_can_carry_it() -> None:
    """Docker publishes nothing of a container on internal networks only, silently: the
    cluster's second and third nodes once published ports that refused every connection."""
    internal = {name for name, net in BASE["networks"].items() if (net or {}).get("internal")}
    for override in (OVERRIDE, CLUSTER):
        for name in {*BASE["services"], *override["services"]}:
            # Compose appends the override's ports and networks to the base file's.
            layers = [spec["services"].get(name, {}) for spec in (BASE, override)]
            if not any(layer.get("ports") for layer in layers):
                continue
            networks = {network for layer in layers for network in layer.get("networks", [])}
            assert networks - internal, f"{name} publishes on internal networks only {networks}"


def test_the_checker_reaches_what_compose_publishes() -> None:
    config = Compose(env={port.variable: "" for port in HOST_PORTS}).config()
    for service in SERVICE_NAMES:
        assert (
            config.database(service)
            == BASE["services"][f"postgres-{service}"]["environment"]["SERVICE_DB_NAME"]
        )
        assert config.pg_port_of(service) == DATABASE_PORTS[service].default
        published = BASE["services"][service]["ports"]
        port = API_PORTS[service]
        assert published == [f"127.0.0.1:${{{port.variable}:-{port.default}}}:{port.default}"]
        assert config.ports[service] == port.default
    moved = Compose(env={API_PORTS["order"].variable: "18001", AMQP_PORT.variable: "35672"})
    assert (moved.config().ports["order"], moved.config().amqp_port) == (18001, 35672)
    admin = BASE["services"][BROKER_CONTAINER]["environment"]
    assert f"${{RABBITMQ_DEFAULT_USER:-{config.amqp_user}}}" == admin["RABBITMQ_DEFAULT_USER"]
    assert f"${{RABBITMQ_DEFAULT_PASS:-{config.amqp_password}}}" == admin["RABBITMQ_DEFAULT_PASS"]


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `docker` that appends its arguments to a log and succeeds, unless the
    command is `pause` of a container named `broken`. It answers `compose config` with the
    compose file and `compose ps` with a container per service, `saga-<service>-1`."""
    log = tmp_path / "docker.log"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    (tmp_path / "config.json").write_text(json.dumps(BASE))
    ps = [{"Service": name, "Name": f"saga-{name}-1"} for name in BASE["services"]]
    (tmp_path / "ps.json").write_text("\n".join(map(json.dumps, ps)))
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if 'config' in sys.argv:\n"
        f"    print(open({str(tmp_path / 'config.json')!r}).read())\n"
        "if 'ps' in sys.argv:\n"
        f"    print(open({str(tmp_path / 'ps.json')!r}).read())\n"
        "if sys.argv[-2:] == ['pause', 'broken']:\n"
        "    sys.stderr.write('Error response from daemon: no such container\\n')\n"
        "    sys.exit(1)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    return log


def _calls(log: Path) -> list[list[str]]:
    """The commands that changed something, in order (not `docker info`, `ps` nor `config`):
    `docker compose ...`, `docker network ...` and `docker start` of a container."""
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [
        call if call[0] in ("network", "start") else _without_files(call)
        for call in calls
        if call[0] in ("compose", "network", "start") and not {"ps", "config"} & set(call)
    ]


def _compose() -> Compose:
    """The stack on free ports, its images named: `up` asks no registry and finds no port taken."""
    return Compose(
        env={
            **{port.variable: str(free_port()) for port in HOST_PORTS},
            **{image.variable: image.official for image in IMAGES},
        }
    )


def _without_files(call: list[str]) -> list[str]:
    """The compose sub-command, once the prefix is checked: the project and both files."""
    files = [arg for name in COMPOSE_FILES for arg in ("--file", str(ROOT / name))]
    prefix = ["compose", "--project-name", "saga", *files]
    assert call[: len(prefix)] == prefix, "the project, then both compose files, base first"
    return call[len(prefix) :]


def test_faults_become_docker_compose_kill_start_pause_unpause_and_network_cuts(
    docker: Path,
) -> None:
    compose = _compose()
    target = ComposeTarget(compose, compose.config())
    chaos = Chaos(target, random.Random(3), seconds=0)
    for kind, name, action in [
        ("service", "payment", "kill"),
        ("relay", "order-relay", "freeze"),
        (BROKER, BROKER, "kill"),
        (DATABASE, "postgres-inventory", "kill"),
        (LINK, "payment/payment-db", "black hole"),
        (ALARM, BROKER, "disk"),
    ]:
        chaos.inject(Fault(0, kind, name, action, pause=0))
    target.heal()
    assert _calls(docker) == [
        ["kill", "--signal", "SIGKILL", "payment"],
        ["start", "saga-payment-1"],
        ["pause", "order-relay"],
        ["unpause", "order-relay"],
        ["kill", "--signal", "SIGKILL", "rabbitmq"],
        ["start", "saga-rabbitmq-1"],
        ["kill", "--signal", "SIGKILL", "postgres-inventory"],
        ["start", "saga-postgres-inventory-1"],
        ["network", "disconnect", "saga_payment-db", "saga-payment-1"],
        ["network", "connect", "--alias", "payment", "saga_payment-db", "saga-payment-1"],
        ["exec", "-T", "rabbitmq", "rabbitmqctl", "set_disk_free_limit", "1000000GB"],
        ["exec", "-T", "rabbitmq", "rabbitmqctl", "set_disk_free_limit", "50MB"],
        ["unpause"],
        ["up", "--detach", "--build", "--wait", "--wait-timeout", "300"],
    ]


def test_the_faults_drawn_cover_every_kind_and_hit_only_containers(docker: Path) -> None:
    compose = _compose()
    target = ComposeTarget(compose, compose.config())
    # No time at all: the planned rounds, every kind of fault once each, run whole all the same.
    chaos = Chaos(
        target, random.Random(7), seconds=0, gap_range=(0, 0), pause_range=(0, 0),
        hole_range=(0, 0), rounds=3,
    )  # fmt: skip
    chaos.run()
    assert len(chaos.faults) == 3 * len(chaos.one_round()) == 3 * 9
    done = Counter((fault.kind, fault.action) for fault in chaos.faults)
    assert done[(BROKER, "kill")] == done[(DATABASE, "kill")] == 3
    assert done[(LINK, "black hole")] == done[(ALARM, "memory")] == done[(ALARM, "disk")] == 3
    assert sum(n for (_, action), n in done.items() if action == "freeze") == 6
    containers = {*PROCESSES, BROKER_CONTAINER, *target.databases()}
    hit = [  # `docker start` names the container, `saga-<service>-1`; compose, the service
        call[-1].removeprefix("saga-").removesuffix("-1") if call[0] == "start" else call[-1]
        for call in _calls(docker)
        if call[0] not in ("network", "exec")
    ]
    assert {BROKER_CONTAINER} <= set(hit) <= containers
    assert set(hit) & set(SERVICE_NAMES) and set(hit) & set(RELAYS)
    cut = [call[-1] for call in _calls(docker) if call[0] == "network"]
    assert len(cut) == 2 * 3 and set(cut) <= {f"saga-{name}-1" for name in containers}
    # A link is a network to a database or to the broker, never `public`, where load comes in.
    assert all(not link.endswith("/public") for link in target.links())


def test_a_refusal_from_docker_is_reported_in_its_own_words(docker: Path) -> None:
    with pytest.raises(ComposeError, match=r"pause broken.*no such container"):
        Compose().pause("broken")


def test_without_docker_the_tool_says_so_and_exits_2(tmp_path: Path) -> None:
    env: dict[str, Any] = {**os.environ, "PATH": str(tmp_path)}  # no docker on this PATH
    run = subprocess.run(
        [sys.executable, "-m", "scripts.chaos", "--target", "compose", "--seconds", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "docker is not installed here" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
