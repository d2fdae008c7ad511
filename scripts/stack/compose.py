"""docker compose as the chaos target (`./saga chaos --target compose`).

The same faults as on the no-Docker stack, the way Docker gives them: `docker compose kill
--signal SIGKILL` and `start` for a crash, `pause` and `unpause` (the cgroup freezer, SIGSTOP for
a whole container) for a partition. Load and checker run on the host, through the ports
docker-compose.yml publishes and those docker-compose.chaos.yml adds for the three databases.
"""

import os
import shutil
import subprocess

from scripts.stack.config import ROOT, StackConfig

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.chaos.yml")
# The project name docker-compose.yml gives itself: chaos hits the stack `docker compose up` runs.
PROJECT = "saga"
BROKER_CONTAINER = "rabbitmq"
# Published by docker-compose.chaos.yml, for the checker.
DATABASE_PORTS = {"order": 5433, "payment": 5434, "inventory": 5435}


class ComposeError(RuntimeError):
    pass


class Compose:
    def __init__(self, project: str = PROJECT) -> None:
        self.project = project

    def run(self, *args: str, check: bool = True) -> str:
        """Run `docker compose` with both files; a failure raises with Docker's own words."""
        if shutil.which("docker") is None:
            raise ComposeError("docker is not installed here; use the no-Docker target instead")
        files = [arg for name in COMPOSE_FILES for arg in ("--file", str(ROOT / name))]
        command = ["docker", "compose", "--project-name", self.project, *files, *args]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise ComposeError(f"`docker compose {' '.join(args)}` failed: {' '.join(said[-3:])}")
        return done.stdout

    def up(self) -> None:
        """Build, (re)create what changed and wait until every container is healthy."""
        self.run("up", "--detach", "--build", "--wait")

    def kill(self, container: str) -> None:
        self.run("kill", "--signal", "SIGKILL", container)

    def start(self, container: str) -> None:
        self.run("start", container)

    def pause(self, container: str) -> None:
        self.run("pause", container)

    def unpause(self, container: str) -> None:
        self.run("unpause", container)

    def heal(self) -> None:
        """Every container thawed, running and healthy again."""
        self.run("unpause", check=False)  # refuses when nothing is paused, which is fine
        self.up()

    def config(self) -> StackConfig:
        """How the host reaches the stack: the published ports, as the administrators.

        The administrators' passwords are docker-compose.yml's defaults unless the same
        variables say otherwise; libpq takes the database one from PGPASSWORD.
        """
        os.environ.setdefault(
            "PGPASSWORD", os.environ.get("POSTGRES_PASSWORD", "postgres-dev-password")
        )
        return StackConfig(
            database_prefix="saga",
            pg_ports=dict(DATABASE_PORTS),
            amqp_user=os.environ.get("RABBITMQ_DEFAULT_USER", "saga-admin"),
            amqp_password=os.environ.get("RABBITMQ_DEFAULT_PASS", "admin-dev-password"),
        )
