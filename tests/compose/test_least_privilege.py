"""Least privilege inside the containers, on the real engine: each database (the three services'
and the dashboard's) is reachable only on its own network and only by its own role, each broker
user touches only its own queues, there is no guest, and no container runs its process as
root."""

import subprocess

import aio_pika
import pytest
from aio_pika.exceptions import ProbableAuthenticationError
from aiormq.exceptions import ChannelAccessRefused

from shared.system import COMPONENT_NAMES, DASHBOARD, SERVICE_NAMES
from tests.compose.conftest import ComposeStack

# docker-compose.yml's development defaults.
DB_PASSWORDS = {name: f"{name}-db-dev-password" for name in COMPONENT_NAMES}
AMQP_PASSWORDS = {name: f"{name}-dev-password" for name in COMPONENT_NAMES}
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"


def exec_in(stack: ComposeStack, container: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "--project-name", stack.compose.project,
         *[arg for name in stack.compose.files for arg in ("--file", name)],
         "exec", "-T", container, *command],
        capture_output=True, text=True, env=stack.env, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("service", COMPONENT_NAMES)
def test_each_database_is_reachable_only_from_its_own_network(
    compose_stack: ComposeStack, service: str
) -> None:
    for database in COMPONENT_NAMES:
        reached = exec_in(
            compose_stack, service, "python", "-c", CONNECT, f"postgres-{database}", "5432"
        )
        assert (reached.returncode == 0) == (database == service), (service, database, reached)
    # The broker shares no network with any database either.
    broker = exec_in(
        compose_stack, "rabbitmq", "bash", "-c", f"exec 3<>/dev/tcp/postgres-{service}/5432"
    )
    assert broker.returncode != 0


@pytest.mark.parametrize("service", COMPONENT_NAMES)
def test_a_service_role_connects_to_its_own_database_and_no_other(
    compose_stack: ComposeStack, service: str
) -> None:
    def psql(user: str, database: str) -> subprocess.CompletedProcess[str]:
        return exec_in(
            compose_stack, f"postgres-{service}", "env", f"PGPASSWORD={DB_PASSWORDS[user]}",
            "psql", "--host", "127.0.0.1", "--username", user, "--dbname", database,
            "--no-psqlrc", "--tuples-only", "--command", "SELECT current_user",
        )  # fmt: skip

    assert psql(service, f"saga_{service}").stdout.strip() == service
    for other in ("postgres", "template1"):
        refused = psql(service, other)
        assert refused.returncode != 0 and "permission denied" in refused.stderr, refused
    for other in COMPONENT_NAMES:
        if other != service:  # another service's role does not exist on this server
            assert psql(other, f"saga_{service}").returncode != 0


async def connect_as(stack: ComposeStack, user: str) -> aio_pika.abc.AbstractConnection:
    """The broker, as one of docker-compose.yml's users with its development password."""
    port = stack.config.amqp_port
    return await aio_pika.connect(f"amqp://{user}:{AMQP_PASSWORDS[user]}@127.0.0.1:{port}/")


async def cannot_read(connection: aio_pika.abc.AbstractConnection, queue_name: str) -> None:
    """A get from the queue is refused (a passive declare needs no permission; reading does)."""
    channel = await connection.channel()
    with pytest.raises(ChannelAccessRefused):
        queue = await channel.declare_queue(queue_name, passive=True)
        await queue.get(fail=False)


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_a_broker_user_reads_only_its_own_queues_and_declares_no_shared_exchange(
    compose_stack: ComposeStack, service: str
) -> None:
    async with await connect_as(compose_stack, service) as connection:
        own = await connection.channel()
        await own.declare_queue(f"{service}.events", passive=True)
        for other in SERVICE_NAMES:
            if other != service:
                await cannot_read(connection, f"{other}.events")
        channel = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await channel.declare_exchange("saga.events", "topic", durable=True)


async def ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


async def test_the_dashboard_user_reads_the_stream_and_the_dlqs_and_nothing_else(
    compose_stack: ComposeStack,
) -> None:
    async with await connect_as(compose_stack, DASHBOARD.name) as connection:
        stream = await connection.channel()
        await stream.set_qos(prefetch_count=10)
        audit = await stream.declare_queue("saga.audit", passive=True)
        await audit.cancel(await audit.consume(ignore, arguments={"x-stream-offset": "last"}))
        for service in SERVICE_NAMES:  # a get, then the message (if any) back where it was
            dlq = await (await connection.channel()).declare_queue(
                f"{service}.events.dlq", passive=True
            )
            if letter := await dlq.get(fail=False):
                await letter.nack(requeue=True)
        for service in SERVICE_NAMES:
            await cannot_read(connection, f"{service}.events")
        channel = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await channel.declare_queue("dashboard.own", durable=True)


async def test_there_is_no_guest(compose_stack: ComposeStack) -> None:
    with pytest.raises(ProbableAuthenticationError):
        await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{compose_stack.config.amqp_port}/")


def test_no_container_runs_its_process_as_root(compose_stack: ComposeStack) -> None:
    top = compose_stack.compose.run("top")
    rows = [line.split() for line in top.splitlines() if line and not line.startswith("SERVICE")]
    assert rows, top
    by_root = [row for row in rows if row[2] == "0"]  # SERVICE # UID PID ...
    assert not by_root, by_root
    running = {row[0] for row in rows}
    assert {*COMPONENT_NAMES, "rabbitmq", *(f"postgres-{c}" for c in COMPONENT_NAMES)} <= running
