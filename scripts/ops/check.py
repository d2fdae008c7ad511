"""Check SPEC.md's invariants over the whole system: the three databases and the broker.

    ./saga check [--prefix saga] [--allow-dlq 0] [--json]

Run it once the system has gone quiet. Each invariant prints how many things it checked and
names every order (or customer, sku, queue) that breaks it; the exit status is 1 if anything
does, 0 otherwise.
"""

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import psycopg
from psycopg.rows import dict_row

from scripts.arguments import at_least
from scripts.stack import StackConfig
from shared import broker
from shared.audit import read_audit
from shared.system import SERVICE_NAMES, Mode
from shared.topology import dead_letter_queue, work_queue


@dataclass
class Invariant:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def fail(self, subject: str, detail: str) -> None:
        self.violations.append(f"{subject}: {detail}")


@dataclass
class Snapshot:
    orders: dict[str, dict[str, Any]]
    charges: dict[str, list[dict[str, Any]]]
    refunds: dict[str, list[dict[str, Any]]]
    accounts: dict[str, int]
    deposits: dict[str, int]
    reservations: dict[str, list[dict[str, Any]]]
    products: dict[str, dict[str, int]]
    restocks: dict[str, int]
    unpublished: dict[str, list[str]]  # service -> order ids of pending outbox rows
    published_ids: set[str]
    queue_depths: dict[str, int]
    audit_ids: set[str]
    sagas: dict[str, str] = field(default_factory=dict)  # order id -> saga status (orchestrated)
    mode: Mode = Mode.CHOREOGRAPHY


def _query(config: StackConfig, service: str, sql: str) -> list[dict[str, Any]]:
    url = config.admin_database_url(service).replace("+psycopg", "")
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def _by_order(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[str(row["order_id"])].append(row)
    return grouped


def read_databases(config: StackConfig) -> dict[str, Any]:
    orders = _query(
        config, "order", "SELECT order_id, customer_id, items, total_cents, status FROM orders"
    )
    reservations = _query(
        config,
        "inventory",
        """
        SELECT r.order_id, r.items, CASE WHEN l.release_id IS NULL THEN 'RESERVED'
               ELSE 'RELEASED' END AS status
        FROM reservations r LEFT JOIN releases l USING (reservation_id)
        """,
    )
    unpublished, published = {}, set()
    for service in SERVICE_NAMES:
        rows = _query(
            config,
            service,
            "SELECT message_id, body->>'correlation_id' AS order_id, published_at FROM outbox",
        )
        unpublished[service] = [str(r["order_id"]) for r in rows if r["published_at"] is None]
        published |= {str(r["message_id"]) for r in rows if r["published_at"] is not None}
    sagas = _query(config, "order", "SELECT saga_id, status FROM saga_instances")
    return {
        "orders": {str(o["order_id"]): o for o in orders},
        "sagas": {str(s["saga_id"]): s["status"] for s in sagas},
        "charges": _by_order(
            _query(config, "payment", "SELECT order_id, customer_id, amount_cents FROM charges")
        ),
        "refunds": _by_order(
            _query(config, "payment", "SELECT order_id, amount_cents FROM refunds")
        ),
        "accounts": {
            r["customer_id"]: r["balance_cents"]
            for r in _query(config, "payment", "SELECT customer_id, balance_cents FROM accounts")
        },
        "deposits": {
            r["customer_id"]: r["total"]
            for r in _query(
                config,
                "payment",
                "SELECT customer_id, sum(amount_cents) AS total FROM deposits GROUP BY 1",
            )
        },
        "reservations": _by_order(reservations),
        "products": {
            r["sku"]: r
            for r in _query(config, "inventory", "SELECT sku, available, reserved FROM products")
        },
        "restocks": {
            r["sku"]: r["total"]
            for r in _query(
                config, "inventory", "SELECT sku, sum(quantity) AS total FROM restocks GROUP BY 1"
            )
        },
        "unpublished": unpublished,
        "published_ids": published,
    }


async def read_broker(amqp_url: str, mode: Mode) -> tuple[dict[str, int], set[str]]:
    """The queues' depths and the audit stream's message ids, from the first node of a cluster
    that serves them: after a fault one node may refuse connections (paused as a minority) or
    lack a running replica of the stream for minutes, and the next node is asked instead. When
    none serves, the error names what each node said."""
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    failures: list[str] = []
    for node in broker.node_urls(amqp_url):
        try:
            return await _read_broker_node(node, mode)
        except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
            failures.append(f"{broker.address(node)}: {broker.problem(exc)}")
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            if "running replica" not in str(exc):
                raise
            failures.append(f"{broker.address(node)}: {exc}")
    raise aio_pika.exceptions.AMQPConnectionError("no node served: " + "; ".join(failures))


async def _read_broker_node(url: str, mode: Mode) -> tuple[dict[str, int], set[str]]:
    depths: dict[str, int] = {}
    connection = await broker.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for service in SERVICE_NAMES:
            for name in (work_queue(service, mode), dead_letter_queue(service, mode)):
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count or 0
        audit = {m.message_id for m in await read_audit(connection) if m.message_id}
    return depths, audit


def check(snapshot: Snapshot, allowed_dlq: int = 0) -> list[Invariant]:
    terminal = Invariant("1. every order is CONFIRMED, REJECTED or CANCELLED")
    confirmed = Invariant(
        "2. CONFIRMED: one charge of the total, no refund, one RESERVED reservation of its lines"
    )
    undone = Invariant("3. REJECTED/CANCELLED: charges - refunds = 0, nothing RESERVED")
    money = Invariant("4a. per customer: balance = deposits - charges + refunds >= 0")
    stock = Invariant(
        "4b. per sku: reserved = RESERVED units, available = restocks - reserved >= 0"
    )
    known = Invariant("4c. every charge and reservation belongs to a known order")
    delivered = Invariant(
        "5. outboxes published, work queues empty, DLQs as expected, audit complete"
    )
    orchestrated = Invariant(
        "6. orchestrated: every saga COMPLETED (order CONFIRMED) or COMPENSATED (not)"
    )

    for order_id, order in snapshot.orders.items():
        charges = snapshot.charges.get(order_id, [])
        refunds = snapshot.refunds.get(order_id, [])
        held = [r for r in snapshot.reservations.get(order_id, []) if r["status"] == "RESERVED"]
        terminal.checked += 1
        if order["status"] not in ("CONFIRMED", "REJECTED", "CANCELLED"):
            terminal.fail(order_id, f"still {order['status']}")
        if order["status"] == "CONFIRMED":
            confirmed.checked += 1
            if [c["amount_cents"] for c in charges] != [order["total_cents"]]:
                confirmed.fail(
                    order_id,
                    f"charges {[c['amount_cents'] for c in charges]}, total {order['total_cents']}",
                )
            if refunds:
                confirmed.fail(order_id, f"refunded {[r['amount_cents'] for r in refunds]}")
            if len(held) != 1 or _lines(held[0]["items"]) != _lines(order["items"]):
                confirmed.fail(
                    order_id, f"{len(held)} RESERVED reservation(s) not matching its lines"
                )
        elif order["status"] in ("REJECTED", "CANCELLED"):
            undone.checked += 1
            charged = sum(c["amount_cents"] for c in charges)
            refunded = sum(r["amount_cents"] for r in refunds)
            if len(charges) > 1 or len(refunds) > 1 or charged != refunded:
                undone.fail(
                    order_id,
                    f"{len(charges)} charge(s) of {charged}, "
                    f"{len(refunds)} refund(s) of {refunded}",
                )
            if held:
                undone.fail(order_id, f"{len(held)} reservation(s) still RESERVED")

    spent: Counter[str] = Counter()
    for order_id, charges in snapshot.charges.items():
        for charge in charges:
            spent[charge["customer_id"]] += charge["amount_cents"]
        for refund in snapshot.refunds.get(order_id, []):
            spent[charges[0]["customer_id"]] -= refund["amount_cents"]
    for customer, balance in snapshot.accounts.items():
        money.checked += 1
        expected = snapshot.deposits.get(customer, 0) - spent[customer]
        if balance != expected or balance < 0:
            money.fail(customer, f"balance {balance}, deposits - charges + refunds = {expected}")

    held_units: Counter[str] = Counter()
    for reservations in snapshot.reservations.values():
        for reservation in reservations:
            if reservation["status"] == "RESERVED":
                held_units.update(_lines(reservation["items"]))
    for sku, product in snapshot.products.items():
        stock.checked += 1
        expected_available = snapshot.restocks.get(sku, 0) - held_units[sku]
        if (
            product["reserved"] != held_units[sku]
            or product["available"] != expected_available
            or product["available"] < 0
        ):
            stock.fail(
                sku,
                f"available {product['available']} (expected {expected_available}), "
                f"reserved {product['reserved']} (RESERVED units {held_units[sku]})",
            )

    for kind, table in (("charge", snapshot.charges), ("reservation", snapshot.reservations)):
        for order_id in table:
            known.checked += 1
            if order_id not in snapshot.orders:
                known.fail(order_id, f"a {kind} for an order the order service does not know")

    for service, order_ids in snapshot.unpublished.items():
        delivered.checked += 1
        for order_id in order_ids:
            delivered.fail(order_id, f"an outbox row in {service} never published")
    for queue, depth in snapshot.queue_depths.items():
        delivered.checked += 1
        limit = allowed_dlq if queue.endswith(".dlq") else 0
        if depth > limit:
            delivered.fail(queue, f"{depth} message(s) waiting (expected at most {limit})")
    missing = snapshot.published_ids - snapshot.audit_ids
    delivered.checked += len(snapshot.published_ids)
    for message_id in sorted(missing)[:50]:
        delivered.fail(message_id, "published but not in saga.audit")
    invariants = [terminal, confirmed, undone, money, stock, known, delivered]
    if snapshot.mode is Mode.ORCHESTRATION or snapshot.sagas:  # no instances to check else
        _check_sagas(snapshot, orchestrated)
        invariants.append(orchestrated)
    return invariants


def _check_sagas(snapshot: Snapshot, invariant: Invariant) -> None:
    for order_id, order in snapshot.orders.items():
        saga = snapshot.sagas.get(order_id)
        if saga is None:
            if snapshot.mode is Mode.ORCHESTRATION:
                invariant.checked += 1
                invariant.fail(order_id, "an order without a saga instance")
            continue
        invariant.checked += 1
        expected = "COMPLETED" if order["status"] == "CONFIRMED" else "COMPENSATED"
        if saga != expected:
            invariant.fail(order_id, f"saga {saga}, order {order['status']}")


def _lines(items: list[dict[str, Any]]) -> Counter[str]:
    units: Counter[str] = Counter()
    for item in items:
        units[item["sku"]] += item["quantity"]
    return units


def snapshot(config: StackConfig) -> Snapshot:
    depths, audit = asyncio.run(read_broker(config.amqp_url, config.mode))
    return Snapshot(
        **read_databases(config), queue_depths=depths, audit_ids=audit, mode=config.mode
    )


def report(invariants: list[Invariant], as_json: bool = False) -> int:
    broken = sum(len(i.violations) for i in invariants)
    if as_json:
        print(
            json.dumps(
                [
                    {"invariant": i.name, "checked": i.checked, "violations": i.violations}
                    for i in invariants
                ],
                indent=2,
            )
        )
        return 1 if broken else 0
    for invariant in invariants:
        mark = "ok  " if not invariant.violations else "FAIL"
        print(
            f"{mark} {invariant.name}: {invariant.checked} checked, "
            f"{len(invariant.violations)} violation(s)"
        )
        for violation in invariant.violations[:100]:
            print(f"       {violation}")
        if len(invariant.violations) > 100:
            print(f"       ... and {len(invariant.violations) - 100} more")
    print(f"{'no violations' if not broken else f'{broken} violation(s)'}")
    return 1 if broken else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="./saga check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The stack is the one the SAGA_* settings name (scripts/stack/config.py, `from_env`): by
    # default the local one; SAGA_TARGET=compose (or `./saga compose check`) the compose stack.
    parser.add_argument("--prefix", help="database names are PREFIX_order, ...")
    parser.add_argument("--pg-host")
    parser.add_argument("--pg-port", type=int)
    parser.add_argument("--amqp-url", help="default: the stack's broker, as its administrator")
    parser.add_argument(
        "--allow-dlq", type=at_least(0), default=0, help="messages a DLQ may hold (injected poison)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = StackConfig.from_env()
    config.database_prefix = args.prefix or config.database_prefix
    config.pg_host = args.pg_host or config.pg_host
    config.pg_port = args.pg_port or config.pg_port
    if args.amqp_url:
        config = config.with_amqp_url(args.amqp_url)
    try:
        invariants = check(snapshot(config), args.allow_dlq)
    except psycopg.OperationalError as exc:
        print(f"cannot read the databases: {exc}".strip(), file=sys.stderr)
        return 2
    except (OSError, aio_pika.exceptions.AMQPError) as exc:
        print(f"cannot read the broker: {exc}", file=sys.stderr)
        return 2
    return report(invariants, args.json)


if __name__ == "__main__":
    sys.exit(main())
