"""The docker compose stack, run for you: images resolved, ports checked, health awaited.

    ./saga compose up [--chaos] [--tracing] [--cluster] [--mode orchestration]   build and start
                                    docker-compose.yml, wait until all is healthy; --tracing
                                    adds the trace viewer (Phoenix), --cluster three RabbitMQ
                                    nodes for one, --mode the orchestrated saga
    ./saga compose down [--volumes] [--cluster]   stop and remove the containers (and, with
                                    --volumes, the data)
    ./saga compose status           each container's state and health
    ./saga compose images           build the stand-in images from Debian packages
    ./saga compose check|load|walkthrough|dlq ...   the tools, against the compose stack

On a machine where no registry answers, `up` builds stand-ins for the official images from
Debian's packages first (deploy/images/). Every host port is a setting (SAGA_AMQP_HOST_PORT,
SAGA_ORDER_HOST_PORT, ...: README, "Running with Docker"); a port already in use is refused with
the setting to change. --chaos lays docker-compose.chaos.yml over it, for the checker;
--cluster docker-compose.cluster.yml.
"""

import argparse
import sys

from scripts.stack import images
from scripts.stack.compose import (
    BASE_FILE,
    CHAOS_FILE,
    CLUSTER_FILE,
    TRACE_VIEWER_PORT,
    Compose,
    ComposeError,
)
from shared.system import Mode


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="./saga compose",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build, start and wait until healthy")
    up.add_argument("--chaos", action="store_true", help="also publish the databases (checker)")
    up.add_argument(
        "--tracing", action="store_true",
        help="the tracing profile: a trace viewer, and every process exporting spans to it",
    )  # fmt: skip
    up.add_argument(
        "--mode", choices=list(Mode),
        help="choreography (the default) or orchestration: SAGA_MODE for every process",
    )  # fmt: skip
    down = commands.add_parser("down", help="stop and remove the containers")
    down.add_argument("--volumes", action="store_true", help="and the data volumes")
    for command in (up, down):
        command.add_argument(
            "--cluster", action="store_true",
            help="a RabbitMQ cluster of three nodes for the broker (docker-compose.cluster.yml)",
        )  # fmt: skip
    commands.add_parser("status", help="each container's state and health")
    commands.add_parser("images", help="build the stand-in images")
    args = parser.parse_args()
    overrides = {
        CHAOS_FILE: getattr(args, "chaos", True),
        CLUSTER_FILE: getattr(args, "cluster", False),
    }
    compose = Compose(
        files=(BASE_FILE, *(name for name, wanted in overrides.items() if wanted)),
        env={"SAGA_MODE": args.mode} if getattr(args, "mode", None) else None,
        tracing=getattr(args, "tracing", False),
    )
    try:
        if args.command == "up":
            compose.up()
            config = compose.config()
            print(f"compose stack {compose.project} is up ({config.mode}): {config.addresses()}")
            if compose.tracing:
                print(f"traces: http://127.0.0.1:{TRACE_VIEWER_PORT.of(compose.env)}")
        elif args.command == "down":
            compose.down(volumes=args.volumes)
            print(f"compose stack {compose.project} is down")
        elif args.command == "status":
            compose.ensure_engine()
            for container in compose.ps():
                health = f" ({container['Health']})" if container.get("Health") else ""
                print(f"{container['Service']:<20} {container['State']}{health}")
        else:
            compose.ensure_engine()
            images.build("all")
            print("built: " + ", ".join(image.stand_in for image in images.IMAGES))
    except (ComposeError, images.ImageError) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
