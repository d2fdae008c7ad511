"""Each service reaches PostgreSQL as a role of its own that owns its database and can connect
to no other service's database (the no-Docker stack; docker-compose.yml is checked statically)."""

import psycopg
import pytest

from scripts.stack import SERVICES, Stack


def connect(stack: Stack, role: str, service: str) -> psycopg.Connection:
    return psycopg.connect(
        host=stack.config.pg_host,
        port=stack.config.pg_port_of(service),
        user=role,
        dbname=stack.config.database(service),
        autocommit=True,
    )


@pytest.mark.parametrize("service", SERVICES)
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
    for other in SERVICES:
        if other != service:
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                connect(stack, role, other).close()


def test_the_running_processes_use_their_own_roles(stack: Stack) -> None:
    with psycopg.connect(
        stack.config.admin_database_url("order").replace("+psycopg", ""), autocommit=True
    ) as conn:
        users: dict[str, list[str]] = dict(
            conn.execute(
                "SELECT datname, array_agg(DISTINCT usename) FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND usename <> %s GROUP BY datname",
                [[stack.config.database(s) for s in SERVICES], stack.config.pg_user],
            ).fetchall()
        )
    assert users == {stack.config.database(s): [stack.config.role(s)] for s in SERVICES}
