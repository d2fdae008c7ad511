"""`python -m dashboard [serve|migrate|rebuild]`: the dashboard process, its migrations, and
a rebuild of its projection from the stream's first offset."""

import argparse
import asyncio

from dashboard import store
from dashboard.settings import DashboardSettings
from shared.cli import serve
from shared.db import Database
from shared.migrations import upgrade


async def _rebuild(url: str) -> None:
    database = Database(url, pool_size=1)
    await database.open()
    try:
        await store.rebuild(database)
    finally:
        await database.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "migrate", "rebuild"]
    )
    args = parser.parse_args()
    settings = DashboardSettings()
    if args.command == "migrate":
        upgrade("dashboard", settings.database_url)
        print("dashboard: database migrated to head")
    elif args.command == "rebuild":
        asyncio.run(_rebuild(settings.database_url))
        print("dashboard: projection dropped; it is rebuilt from the stream's first offset")
    else:
        from dashboard.main import create_app  # the web app only where it is served

        serve(create_app(settings), settings.http_host, settings.http_port, shutdown_seconds=3)


if __name__ == "__main__":
    main()
