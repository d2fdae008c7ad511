"""What a stack needs before its processes start, and takes away after: per service a database
and a role that owns it, a broker user allowed only its own queues; the vhost; the broker
topology, declared once by the administrator; every database migrated to head."""

import os
import subprocess
import sys

import psycopg

from scripts.stack.config import ROOT, StackConfig
from shared import topology
from shared.system import COMPONENT_NAMES, DASHBOARD


class Provisioner:
    def __init__(self, config: StackConfig) -> None:
        self.config = config

    def prepare(self, env_for: dict[str, dict[str, str]]) -> None:
        """Create what is missing, declare the topology as the administrator, and migrate each
        database as its own role (`env_for`: each component's process environment)."""
        self.create_databases()
        self.create_vhost()
        self.create_broker_users()
        subprocess.run(
            [sys.executable, "-m", "shared.topology"],
            env={
                **os.environ,
                "AMQP_URL": self.config.amqp_url,
                "SAGA_MODE": self.config.mode,
                **self.config.env,
            },
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for name in COMPONENT_NAMES:
            subprocess.run(
                [sys.executable, "-m", module_of(name), "migrate"],
                env=env_for[name],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )

    def remove(self) -> None:
        """Drop every database, role, broker user and vhost the stack made."""
        self.drop_databases()
        self.delete_broker_users()
        self.delete_vhost()

    def _admin(self, service: str) -> psycopg.Connection:
        c = self.config
        return psycopg.connect(
            host=c.pg_host,
            port=c.pg_port_of(service),
            user=c.pg_user,
            dbname="postgres",
            autocommit=True,
        )

    def create_databases(self) -> None:
        """Per service: a login role, not a superuser, that owns its database; and no one else
        (PUBLIC) may connect to that database. So a service cannot reach another's tables."""
        for service in COMPONENT_NAMES:
            name, role = self.config.database(service), self.config.role(service)
            with self._admin(service) as conn:
                role_exists = "SELECT 1 FROM pg_roles WHERE rolname = %s"
                if not conn.execute(role_exists, [role]).fetchone():
                    conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
                database_exists = "SELECT 1 FROM pg_database WHERE datname = %s"
                if not conn.execute(database_exists, [name]).fetchone():
                    conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
                conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC')

    def drop_databases(self) -> None:
        for service in COMPONENT_NAMES:
            with self._admin(service) as conn:
                conn.execute(
                    f'DROP DATABASE IF EXISTS "{self.config.database(service)}" WITH (FORCE)'
                )
                conn.execute(f'DROP ROLE IF EXISTS "{self.config.role(service)}"')

    def create_vhost(self) -> None:
        vhost = self.config.vhost
        if vhost == "/":
            return
        self.rabbitmqctl("add_vhost", vhost, check=False)
        self.rabbitmqctl("set_permissions", "-p", vhost, self.config.amqp_user, ".*", ".*", ".*")

    def create_broker_users(self) -> None:
        """Per service: a broker user allowed only its own queues, and to publish to the saga's
        exchanges (shared/topology.py, `permissions`), as in docker-compose.yml."""
        for service in COMPONENT_NAMES:
            user = self.config.amqp_user_of(service)
            password = self.config.amqp_password_of(service)
            if not self.rabbitmqctl("add_user", user, password, check=False):
                self.rabbitmqctl("change_password", user, password)
            configure, write, read = topology.permissions(service)
            self.rabbitmqctl(
                "set_permissions", "-p", self.config.vhost, user, configure, write, read
            )

    def delete_broker_users(self) -> None:
        for service in COMPONENT_NAMES:
            self.rabbitmqctl("delete_user", self.config.amqp_user_of(service), check=False)

    def delete_vhost(self) -> None:
        if self.config.vhost != "/":
            self.rabbitmqctl("delete_vhost", self.config.vhost, check=False)

    def rabbitmqctl(self, *args: str, check: bool = True) -> bool:
        # rabbitmqctl needs the broker's Erlang cookie: root's, or the rabbitmq user's.
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        done = subprocess.run(
            [*sudo, *self.config.rabbitmqctl, *args],
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return done.returncode == 0


def module_of(component: str) -> str:
    """The module a component's process runs: `services.order`, ..., `dashboard`."""
    return component if component == DASHBOARD.name else f"services.{component}"
