"""The broker topology, and who declares what.

The whole topology must exist before anything publishes: a relay that starts before the
payment service must still find `payment.events` bound, or the OrderCreated it publishes would
reach only the audit stream and payment would never see it. So either every process declares
all of it (`declare`, DECLARE_TOPOLOGY=all, the default: one broker user that may do anything),
or an administrator declares it once (`python -m shared.topology`) and each process, as a user
allowed only its own queues, declares just those and checks the exchanges (`declare_own`,
DECLARE_TOPOLOGY=own: docker-compose.yml and the no-Docker stack).

Declarations are idempotent, but their arguments must match exactly what the broker already
has, so they live here once; which keys each work queue is bound to is the system's declaration
(shared/system.py).
"""

import asyncio
import logging
import time
from typing import Any

import aio_pika
from aio_pika import ExchangeType
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)

from shared import broker
from shared.commands import COMMAND_KEYS
from shared.observations import OBSERVATIONS_EXCHANGE
from shared.system import DASHBOARD, SERVICE_NAMES, SERVICES, Mode, service_of

logger = logging.getLogger("topology")

EVENTS_EXCHANGE = "saga.events"
COMMANDS_EXCHANGE = "saga.commands"  # the orchestrator's (SPEC.md, "Orchestration mode")
DEAD_LETTER_EXCHANGE = "saga.dlx"
AUDIT_STREAM = "saga.audit"

# How long a process waits on one connection for the audit stream to run (wait_for_audit_stream).
STREAM_WAIT_SECONDS = 15

# The audit stream's files: retention drops whole segments, and RabbitMQ leaves one offset
# unused at the start of each new segment (docs/DESIGN.md, decision 20): offsets increase, with
# gaps. A setting (AUDIT_SEGMENT_BYTES), so that a test can roll segments over in minutes.
AUDIT_SEGMENT_BYTES = 50_000_000


def audit_arguments(segment_bytes: int = AUDIT_SEGMENT_BYTES) -> dict[str, Any]:
    return {
        "x-queue-type": "stream",
        "x-max-age": "7D",
        "x-max-length-bytes": 2_000_000_000,
        "x-stream-max-segment-size-bytes": segment_bytes,
    }


def permissions(component: str) -> tuple[str, str, str]:
    """A component's broker user: configure, write and read, as RabbitMQ regular
    expressions (see `service_permissions` and `dashboard_permissions`)."""
    if component == DASHBOARD.name:
        return dashboard_permissions()
    return service_permissions(component)


def dashboard_permissions() -> tuple[str, str, str]:
    """The dashboard's user declares nothing; it reads the audit stream and every DLQ, and
    publishes only through the default exchange, to replay a dead letter to its work queue."""
    dlqs = "|".join(
        f"{queue}.dlq" for name in SERVICE_NAMES for queue in work_queues(name)
    ).replace(".", r"\.")
    audit = AUDIT_STREAM.replace(".", r"\.")
    return "^$", "^amq\\.default$", f"^({audit}|{dlqs})$"


def service_permissions(service: str) -> tuple[str, str, str]:
    """A service's broker user (it and its relay): configure, write and read, as RabbitMQ
    regular expressions. It may declare only its own queues, consume only them and the audit
    stream (its relay waits for the stream, `wait_for_audit_stream`), publish to the saga's
    exchanges and, for retries, to its delay queues through the default exchange."""
    kinds = "|".join(service_of(service).queue_kinds)
    own = rf"{service}\.({kinds})(\..*)?"
    exchanges = "|".join(
        (EVENTS_EXCHANGE, COMMANDS_EXCHANGE, DEAD_LETTER_EXCHANGE, OBSERVATIONS_EXCHANGE)
    ).replace(".", r"\.")
    audit = AUDIT_STREAM.replace(".", r"\.")
    return (
        f"^{own}$",
        f"^({own}|{exchanges}|amq\\.default)$",
        f"^({own}|{exchanges}|{audit})$",
    )


def work_queues(service: str) -> list[str]:
    """Every work queue of the service, whichever the mode: `payment.events`, `payment.commands`."""
    return [f"{service}.{kind}" for kind in service_of(service).queue_kinds]


def work_queue(service: str, mode: Mode) -> str:
    """`payment.events`, or in orchestration `payment.commands` (the order service keeps
    `order.events`, where the replies come)."""
    if mode is Mode.CHOREOGRAPHY:
        return f"{service}.events"
    return f"{service}.{service_of(service).queue_kind(mode)}"


def dead_letter_queue(service: str, mode: Mode) -> str:
    return f"{work_queue(service, mode)}.dlq"


def retry_queue(service: str, delay_ms: int, mode: Mode) -> str:
    return f"{work_queue(service, mode)}.retry.{delay_ms}ms"


def exchange_of(routing_key: str) -> str:
    """Where a message with that routing key is published: a command's or an event's exchange."""
    return COMMANDS_EXCHANGE if routing_key in COMMAND_KEYS else EVENTS_EXCHANGE


# A delivery that kills its consumer again and again (it is never acked) is dead-lettered by
# the broker after this many deliveries. Explicit, so RabbitMQ 3.x (no default) and 4.x (a
# default of 20) behave the same.
DELIVERY_LIMIT = 20


def work_queue_arguments(service: str, mode: Mode) -> dict[str, Any]:
    return _quorum(DEAD_LETTER_EXCHANGE, dead_letter_queue(service, mode)) | {
        "x-delivery-limit": DELIVERY_LIMIT
    }


# Dead-letter queues are classic queues: a quorum queue would count every look at its messages
# (the DLQ tool reads and returns them) towards a delivery limit, and RabbitMQ 4 drops a message
# past its limit when, as here, there is nowhere further to dead-letter it.
DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "classic"}


def _quorum(dead_letter_exchange: str, dead_letter_routing_key: str) -> dict[str, Any]:
    # At-least-once dead-lettering (RabbitMQ 3.10+) needs reject-publish overflow: a message
    # leaves a quorum queue for its dead-letter target only once that target confirmed it.
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": dead_letter_exchange,
        "x-dead-letter-routing-key": dead_letter_routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


# The exchanges a publisher publishes to, by name (see `exchange_of`).
Exchanges = dict[str, AbstractExchange]


async def declare(
    connection: AbstractConnection,
    channel: AbstractChannel,
    retry_delays_ms: list[int],
    mode: Mode,
    audit_segment_bytes: int = AUDIT_SEGMENT_BYTES,
) -> Exchanges:
    """Declare the whole topology of that mode (an administrator's job) on `channel`; return
    the exchanges that messages are published to."""
    exchanges = {
        name: await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
        for name in (EVENTS_EXCHANGE, COMMANDS_EXCHANGE)
    }
    await channel.declare_exchange(DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT, durable=True)
    observations = await channel.declare_exchange(
        OBSERVATIONS_EXCHANGE, ExchangeType.TOPIC, durable=True
    )
    audit = await channel.declare_queue(
        AUDIT_STREAM, durable=True, arguments=audit_arguments(audit_segment_bytes)
    )
    # Every event and every command; and what consumers saw happen to messages
    # (shared/observations.py) joins the same history.
    for exchange in (*exchanges.values(), observations):
        await audit.bind(exchange, routing_key="#")
    for service in SERVICES:
        await _declare_queues_of(
            connection, channel, service.name, exchanges, retry_delays_ms, mode
        )
    return exchanges


async def declare_own(
    connection: AbstractConnection,
    channel: AbstractChannel,
    retry_delays_ms: list[int],
    service: str | None,
    mode: Mode,
) -> Exchanges:
    """What a least-privileged process may declare: its own queues and bindings (a relay:
    none), with the exchanges only checked. The administrator's `declare` ran before it
    (`python -m shared.topology`), so every route exists whatever starts first."""
    exchanges = {
        name: await channel.get_exchange(name, ensure=True)  # passive
        for name in (EVENTS_EXCHANGE, COMMANDS_EXCHANGE)
    }
    if service is not None:
        await channel.get_exchange(DEAD_LETTER_EXCHANGE, ensure=True)
        await _declare_queues_of(connection, channel, service, exchanges, retry_delays_ms, mode)
    return exchanges


async def _declare_queues_of(
    connection: AbstractConnection,
    channel: AbstractChannel,
    service: str,
    exchanges: Exchanges,
    retry_delays_ms: list[int],
    mode: Mode,
) -> None:
    """The service's work queue of `mode`, with its dead-letter and delay queues, bound to that
    mode's keys and to no other key the service ever takes; and its other work queue, if a run
    in the other mode left one, unbound: a stack switched from one mode to the other routes
    nothing to a queue it no longer reads, nor a key it no longer handles."""
    this = service_of(service)
    name = work_queue(service, mode)
    every_key = sorted({*this.consumes, *this.commands, *this.replies})
    await _declare_dead_letter_queue(connection, service, mode)
    queue = await channel.declare_queue(
        name, durable=True, arguments=work_queue_arguments(service, mode)
    )
    for key in every_key:
        if key in this.keys(mode):
            await queue.bind(exchanges[exchange_of(key)], routing_key=key)
        else:  # an unbind that finds no binding is a no-op
            await queue.unbind(exchanges[exchange_of(key)], routing_key=key)
    # One delay queue per retry delay: a message waits out its TTL there, then is dead-lettered
    # back to the work queue. Per-delay queues keep a 30 s wait from holding up a 1 s one (a
    # queue only expires messages at its head).
    for delay_ms in retry_delays_ms:
        retry_args = _quorum("", name) | {"x-message-ttl": delay_ms}
        await channel.declare_queue(
            retry_queue(service, delay_ms, mode), durable=True, arguments=retry_args
        )
    for other in set(work_queues(service)) - {name}:
        await _unbind_if_declared(connection, other, exchanges, every_key)


async def _unbind_if_declared(
    connection: AbstractConnection, name: str, exchanges: Exchanges, keys: list[str]
) -> None:
    """On a channel of its own, as a passive declaration of a missing queue closes it."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        for key in keys:
            await queue.unbind(exchanges[exchange_of(key)], routing_key=key)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        pass  # never declared: nothing to undo
    finally:
        if not channel.is_closed:
            await channel.close()


async def _declare_dead_letter_queue(
    connection: AbstractConnection, service: str, mode: Mode
) -> None:
    """On a channel of its own: a classic queue lives on one node of a cluster, and while that
    node is down its declaration fails (NOT_FOUND, "home node ... is down"), closing the
    channel. That is said, and the set-up goes on: the queue and its binding exist (they were
    declared when the node was up), and at-least-once dead-lettering keeps a dead letter in its
    quorum queue until the DLQ has confirmed it."""
    name = dead_letter_queue(service, mode)
    channel = await connection.channel()
    try:
        dlq = await channel.declare_queue(name, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
        await dlq.bind(DEAD_LETTER_EXCHANGE, routing_key=name)
    except aio_pika.exceptions.ChannelNotFoundEntity as exc:
        logger.warning("%s is out of reach (%s); going on without it", name, exc)
    finally:
        if not channel.is_closed:
            await channel.close()


async def wait_for_audit_stream(connection: AbstractConnection) -> None:
    """Return once the audit stream takes a consumer; a relay publishes only after that.

    Right after a broker restart RabbitMQ 3.10 routes to a stream that is not running yet,
    and confirms the publish without storing it there: `python -m scripts.chaos.stream_loss` kills a
    node five times under a publishing loop, and found 160 of 10,517 confirmed messages missing
    from the stream, all published just after a reconnect; waiting for the stream first, none
    of 16,380. Until the stream runs, a passive declaration answers NOT_FOUND or a consumer
    PRECONDITION_FAILED, each closing the channel.

    In a cluster, the node a process reached may be the one whose replica is not running
    (RabbitMQ 4 once left one so for two minutes after a partition, while the other two
    served): after STREAM_WAIT_SECONDS this raises StreamNotRunning, and the broker link goes
    on to the next node (shared/broker.py); with one node, it connects to it again.
    """
    deadline = time.monotonic() + STREAM_WAIT_SECONDS
    next_note = time.monotonic()
    while True:
        channel = await connection.channel()
        try:
            stream = await channel.declare_queue(AUDIT_STREAM, passive=True)
            await channel.set_qos(prefetch_count=1)
            tag = await stream.consume(_ignore, arguments={"x-stream-offset": "next"})
            await stream.cancel(tag)
            return
        except aio_pika.exceptions.ChannelClosed as exc:
            if time.monotonic() >= deadline:
                raise StreamNotRunning(
                    f"{AUDIT_STREAM} not running here after {STREAM_WAIT_SECONDS} s: {exc}"
                ) from exc
            if time.monotonic() >= next_note:  # a line every five seconds, not every try
                logger.info("waiting for %s to run: %s", AUDIT_STREAM, exc)
                next_note = time.monotonic() + 5
        finally:
            if not channel.is_closed:
                await channel.close()
        await asyncio.sleep(0.1)


class StreamNotRunning(Exception):
    """The audit stream has no running replica on the node of this connection."""


async def _ignore(message: AbstractIncomingMessage) -> None:
    """Nothing is read: with offset `next`, and cancelled at once, nothing is delivered."""


async def _declare_all(
    url: str, retry_delays_ms: list[int], mode: Mode, audit_segment_bytes: int
) -> None:
    connection = await broker.connect(url)
    async with connection:
        channel = await connection.channel()
        await declare(connection, channel, retry_delays_ms, mode, audit_segment_bytes)


if __name__ == "__main__":
    # `python -m shared.topology`: the administrator's one-shot set-up (docker-compose.yml's
    # `topology` job, the no-Docker stack's prepare), with AMQP_URL, RETRY_DELAYS_MS,
    # SAGA_MODE and AUDIT_SEGMENT_BYTES.
    from shared.settings import CommonSettings

    settings = CommonSettings()
    asyncio.run(
        _declare_all(
            settings.amqp_url,
            settings.retry_delays_ms,
            settings.saga_mode,
            settings.audit_segment_bytes,
        )
    )
    print(f"{settings.saga_mode} topology declared on {settings.amqp_url.rsplit('@', 1)[-1]}")
