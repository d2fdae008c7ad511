"""`python -m relay <service>`: relay one service database's outbox (DATABASE_URL)."""

import argparse
import asyncio
import contextlib
import signal

import uvloop

from relay.relay import Relay
from relay.settings import RelaySettings
from shared import log, tracing
from shared.settings import database_url
from shared.system import SERVICE_NAMES, service_of


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m relay")
    parser.add_argument("service", choices=SERVICE_NAMES)
    args = parser.parse_args()
    settings = RelaySettings()
    if not settings.database_url:
        settings.database_url = database_url(service_of(args.service).database)
    process = f"{args.service}-relay"
    log.setup(process, settings.log_level, settings.log_json, settings.log_trace_ids)
    tracing.setup(process)
    try:
        uvloop.run(_serve(Relay(settings)))  # the event loop uvicorn gives the services
    finally:
        tracing.shutdown()


async def _serve(relay: Relay) -> None:
    task = asyncio.create_task(relay.run())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    main()
