"""Inspect and replay a service's dead-letter queue.

    ./saga dlq list payment            id, type, reason, attempts, age of each message
    ./saga dlq show payment ID         one message: headers and body
    ./saga dlq replay payment ID...    send them back to payment.events
    ./saga dlq replay payment --all
    ./saga dlq purge payment --yes     drop every message in payment.events.dlq

A replayed message keeps its message_id, so a service that did apply it meanwhile drops it as a
duplicate. It goes straight to the service's own work queue, not through the exchange, so no
other service sees it again (shared/dead_letters.py). The broker is the stack's (the SAGA_*
settings, scripts/stack/config.py), or AMQP_URL, or --amqp-url.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime

import aio_pika

from scripts.stack import StackConfig
from shared import broker
from shared.dead_letters import Letter, read_letters, replay
from shared.system import SERVICE_NAMES, Mode
from shared.topology import dead_letter_queue, work_queue


async def run(args: argparse.Namespace) -> int:
    connection = await broker.connect(args.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        mode = Mode(args.mode)
        letters = await read_letters(channel, args.service, mode)
        if args.command == "list":
            _print_table(letters)
        elif args.command == "show":
            return _show([letter for letter in letters if letter.id in args.ids], args.ids)
        elif args.command == "replay":
            chosen = (
                letters if args.all else [letter for letter in letters if letter.id in args.ids]
            )
            missing = set(args.ids) - {letter.id for letter in chosen}
            for letter in chosen:
                await replay(channel, args.service, letter, mode)
                target = work_queue(args.service, mode)
                print(f"replayed {letter.id} ({letter.message.type}) to {target}")
            if missing:
                print(
                    f"not in {dead_letter_queue(args.service, mode)}: {', '.join(sorted(missing))}",
                    file=sys.stderr,
                )
                return 1
            if not chosen:
                print("nothing to replay")
        elif args.command == "purge":
            if not args.yes:
                print(
                    f"{len(letters)} message(s) would be dropped; add --yes to purge",
                    file=sys.stderr,
                )
                return 1
            for letter in letters:
                await letter.message.ack()
            print(f"purged {len(letters)} message(s) from {dead_letter_queue(args.service, mode)}")
    return 0


def _age(letter: Letter) -> str:
    when = letter.dead_lettered_at
    if when is None:
        return "?"
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _print_table(letters: list[Letter]) -> None:
    if not letters:
        print("the dead-letter queue is empty")
        return
    print(f"{'MESSAGE ID':<36}  {'TYPE':<18}  {'REASON':<18}  {'ATTEMPTS':>8}  {'AGE':>5}")
    for letter in letters:
        print(
            f"{letter.id:<36}  {letter.message.type or '?':<18}  {letter.reason:<18}  "
            f"{letter.attempts:>8}  {_age(letter):>5}"
        )
    print(f"{len(letters)} message(s)")


def _show(letters: list[Letter], ids: list[str]) -> int:
    if not letters:
        print(f"no message {', '.join(ids)} in the dead-letter queue", file=sys.stderr)
        return 1
    for letter in letters:
        message = letter.message
        print(
            f"message_id:  {letter.id}\ntype:        {message.type}\n"
            f"routing key: {message.routing_key}"
        )
        for key, value in sorted(message.headers.items()):
            print(f"header {key}: {value!s}")
        try:
            print(json.dumps(json.loads(message.body), indent=2))
        except ValueError:
            print(f"body (not JSON): {message.body[:2000]!r}")
    return 0


def main() -> int:
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # we say it once, readably
    parser = argparse.ArgumentParser(
        prog="./saga dlq", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--mode",
        choices=list(Mode),
        default=StackConfig.from_env().mode,
        help="the stack's mode: orchestrated, payment's and inventory's DLQs are those of their "
        "command queues (default: SAGA_MODE, or the stack's)",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("AMQP_URL") or StackConfig.from_env().amqp_url,
        help="default: AMQP_URL, or the stack's broker as its administrator",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "show", "replay", "purge"):
        command = commands.add_parser(name)
        command.add_argument("service", choices=SERVICE_NAMES)
        if name == "show":
            command.add_argument("ids", nargs="+", metavar="ID")
        if name == "replay":
            command.add_argument("ids", nargs="*", metavar="ID")
            command.add_argument("--all", action="store_true", help="replay every message")
        if name == "purge":
            command.add_argument("--yes", action="store_true", help="really drop them")
    args = parser.parse_args()
    if args.command == "replay" and not (args.ids or args.all):
        parser.error("replay needs message ids or --all")
    try:
        return asyncio.run(run(args))
    except (OSError, aio_pika.exceptions.AMQPError) as exc:
        print(f"cannot reach RabbitMQ at {args.amqp_url.split('@')[-1]}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
