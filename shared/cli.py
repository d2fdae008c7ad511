"""`python -m services.<name> [serve|migrate]`: the one entry point of each service; `serve`,
how every web process (the dashboard too) runs."""

import argparse
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from shared.migrations import upgrade
from shared.settings import ServiceSettings


def main(
    name: str,
    settings_type: type[ServiceSettings],
    create_app: Callable[[ServiceSettings], FastAPI],
) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args()
    settings = settings_type()  # type: ignore[call-arg]  # each service's subclass has defaults
    if args.command == "migrate":
        upgrade(name, settings.database_url)
        print(f"{name}: database migrated to head")
        return
    serve(create_app(settings), settings.http_host, settings.http_port)


def serve(app: FastAPI, host: str, port: int, shutdown_seconds: int = 5) -> None:
    """Run `app` with the project's own logging (shared/log.py: no uvicorn config, no access
    log), giving open requests `shutdown_seconds` on SIGTERM."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=shutdown_seconds,
    )
