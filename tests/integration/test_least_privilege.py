"""Each service, and the dashboard, reaches PostgreSQL as a role of its own that owns its
database and can connect to no other, and RabbitMQ as a user that may touch only its own queues
(the no-Docker stack; tests/compose/ checks the containers)."""

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
import psycopg
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import ChannelAccessRefused

from scripts.stack import Stack
from shared import topology
from shared.system import COMPONENT_NAMES, DASHBOARD, SERVICE_NAMES


def connect(stack: Stack, role: str, service: str) -> psycopg.Connection:
    return psycopg.connect(
        host=stack.config.pg_host,
        port=stack.config.pg_port_of(service),
        user=role,
        dbname=stack.config.database(service),
        autocommit=True,
    )


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_a_service_role_owns_its_database_and_reaches_no_other(stack: Stack, service: str) -> None:
    role = stack.config.role(service)
    assert f"//{role}@" in stack.env_for(service)["DATABASE_URL"]
    assert f"//{role}@" in stack.env_for(f"{service}-relay")["DATABASE_URL"]
    with connect(stack, role, service) as conn:
        owner, superuser, createdb = conn.execute(
            "SELECT pg_get_userbyid(d.datdba), r.rolsuper, r.rolcreatedb "
            "FROM pg_database d, pg_roles r WHERE d.datname = current_database() "
            "AND r.rolname = current_user"
        ).fetchone()  # type: ignore[misc]
        assert (owner, superuser, createdb) == (role, False, False)
        tables = {
            row[0]
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {"outbox", "inbox"} <= tables
        assert all(
            row[0] == role
            for row in conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        )
    for other in SERVICE_NAMES:
        if other != service:
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                connect(stack, role, other).close()


def test_the_dashboard_role_owns_its_database_and_reaches_no_service_database(
    stack: Stack,
) -> None:
    role = stack.config.role(DASHBOARD.name)
    assert f"//{role}@" in stack.env_for(DASHBOARD.name)["DATABASE_URL"]
    with connect(stack, role, DASHBOARD.name) as conn:
        owner, superuser = conn.execute(
            "SELECT pg_get_userbyid(d.datdba), r.rolsuper FROM pg_database d, pg_roles r "
            "WHERE d.datname = current_database() AND r.rolname = current_user"
        ).fetchone()  # type: ignore[misc]
        assert (owner, superuser) == (role, False)
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables")}
        assert {"sagas", "stream_messages", "stream_position"} <= tables
    for service in SERVICE_NAMES:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect(stack, role, service).close()


def test_the_running_processes_use_their_own_roles(stack: Stack) -> None:
    with psycopg.connect(
        stack.config.admin_database_url("order").replace("+psycopg", ""), autocommit=True
    ) as conn:
        users: dict[str, list[str]] = dict(
            conn.execute(
                "SELECT datname, array_agg(DISTINCT usename) FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND usename <> %s GROUP BY datname",
                [[stack.config.database(c) for c in COMPONENT_NAMES], stack.config.pg_user],
            ).fetchall()
        )
    assert users == {stack.config.database(c): [stack.config.role(c)] for c in COMPONENT_NAMES}


async def ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


Attempt = Callable[[AbstractChannel], Awaitable[object]]


async def refused(connection: AbstractConnection, attempt: Attempt) -> bool:
    """Whether the broker refuses `attempt` on a fresh channel of `connection` (403)."""
    channel = await connection.channel()
    try:
        await attempt(channel)
    except ChannelAccessRefused:
        return True
    await channel.close()
    return False


def consume(queue_name: str) -> Attempt:
    async def attempt(channel: AbstractChannel) -> object:
        queue = await channel.get_queue(queue_name, ensure=False)
        return await queue.consume(ignore)

    return attempt


async def test_a_service_broker_user_reaches_only_its_own_queues(stack: Stack) -> None:
    own_dlq = topology.dead_letter_queue("payment", stack.config.mode)
    connection = await aio_pika.connect(stack.config.amqp_url_of("payment"))
    async with connection:
        assert not await refused(connection, consume(own_dlq))
        # Its relay may read the audit stream: it waits for the stream to run before publishing.
        await asyncio.wait_for(topology.wait_for_audit_stream(connection), 10)
        assert await refused(connection, consume("order.events"))
        assert await refused(connection, consume("inventory.events.dlq"))
        assert await refused(
            connection,
            lambda channel: channel.declare_queue("order.events", durable=True, arguments={}),
        )
        assert await refused(
            connection,
            lambda channel: channel.declare_exchange("saga.events", "topic", durable=True),
        )


async def test_the_dashboard_broker_user_reads_the_stream_and_the_dlqs_and_nothing_else(
    stack: Stack,
) -> None:
    connection = await aio_pika.connect(stack.config.amqp_url_of(DASHBOARD.name))
    async with connection:

        async def follow_the_stream(channel: AbstractChannel) -> object:
            await channel.set_qos(prefetch_count=10)
            stream = await channel.get_queue(topology.AUDIT_STREAM, ensure=False)
            return await stream.consume(ignore, arguments={"x-stream-offset": "last"})

        mode = stack.config.mode
        assert not await refused(connection, follow_the_stream)
        assert not await refused(connection, consume(topology.dead_letter_queue("payment", mode)))
        assert await refused(connection, consume(topology.work_queue("payment", mode)))
        assert await refused(
            connection, lambda channel: channel.declare_queue("dashboard.own", durable=True)
        )
        assert await refused(
            connection,
            lambda channel: channel.declare_exchange("saga.events", "topic", durable=True),
        )
