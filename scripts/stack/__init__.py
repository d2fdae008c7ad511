"""The harness: the whole system without Docker, its own PostgreSQL and RabbitMQ when a run must
kill them, and docker compose; shared by `./saga up`, the tools and the tests.

    config.py     where a stack's pieces live (StackConfig)
    provision.py  databases, roles, vhost, broker users, topology, migrations
    processes.py  the processes, by pid, with their logs (Stack)
    instances.py  a PostgreSQL cluster or RabbitMQ node of our own
    compose.py    the docker compose stack
    follow.py     several logs followed at once
"""

from scripts.stack.config import StackConfig
from scripts.stack.processes import Stack

__all__ = ["Stack", "StackConfig"]
