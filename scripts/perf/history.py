"""A long history under the bench's stack: a million finished sagas already in the databases.

`./saga bench --history 1000000` writes them before it measures, to show what grows with
history and what does not. Each saga is what a confirmed one leaves behind in every service:
the order, its three history rows, its two events in order's outbox (published) and the two it
consumed in order's inbox; payment's charge, its event and its inbox row; inventory's
reservation, its event and its inbox row. The order ids are the same in the three databases
(md5 of the saga's number), the rows are spread over the last five days (inside the outbox's
seven days of retention, so housekeeping has nothing to prune while the bench runs), and every
statement is one INSERT ... SELECT over generate_series, run as each database's administrator.

Its customers deposited what they were charged and its skus were restocked with what they hold
reserved, so balances and stock add up; but the audit stream and the dashboard's read model are
not filled, so the checker's invariant 5 would not pass over it. The bench checks nothing, and
measures history without the dashboard (`--without-dashboard`).
"""

import time

import psycopg

from scripts.stack import StackConfig

# One saga's fields, by its number n (1..count), shared by the statements below.
SAGA = """
    SELECT n,
           md5('saga-history-' || n)::uuid AS order_id,
           'history-c' || mod(n, 1000) AS customer_id,
           now() - make_interval(secs => n * %(spread)s) AS at
    FROM generate_series(1, %(count)s) AS n
"""
# A published outbox row of one type: its envelope as the services write it.
PUBLISHED = """
    INSERT INTO outbox (message_id, routing_key, body, created_at, published_at)
    SELECT md5('{type}-' || n)::uuid, '{key}',
           jsonb_build_object(
               'message_id', md5('{type}-' || n)::uuid, 'type', '{type}', 'version', 1,
               'occurred_at', at, 'correlation_id', order_id, 'causation_id', null,
               'producer', '{producer}',
               'data', jsonb_build_object('order_id', order_id, 'customer_id', customer_id)),
           at, at
    FROM ({saga}) AS saga
"""
CONSUMED = """
    INSERT INTO inbox (message_id, message_type, received_at)
    SELECT md5('{type}-' || n)::uuid, '{type}', at FROM ({saga}) AS saga
"""
ITEMS = """jsonb_build_array(jsonb_build_object(
    'sku', 'history-s' || mod(n, 100), 'quantity', 1, 'unit_price_cents', 500))"""

STATEMENTS: dict[str, list[str]] = {
    "order": [
        f"""INSERT INTO orders (order_id, customer_id, items, total_cents, status, created_at,
                                updated_at, deadline_at)
            SELECT order_id, customer_id, {ITEMS}, 500, 'CONFIRMED', at, at,
                   at + interval '30 seconds'
            FROM ({SAGA}) AS saga""",
        f"""INSERT INTO order_history (order_id, from_status, to_status, at)
            SELECT order_id, step.from_status, step.to_status, at
            FROM ({SAGA}) AS saga,
                 (VALUES (NULL, 'PENDING'), ('PENDING', 'PAID'), ('PAID', 'CONFIRMED'))
                     AS step (from_status, to_status)""",
        PUBLISHED.format(type="OrderCreated", key="order.created", producer="order", saga=SAGA),
        PUBLISHED.format(type="OrderConfirmed", key="order.confirmed", producer="order", saga=SAGA),
        CONSUMED.format(type="PaymentSucceeded", saga=SAGA),
        CONSUMED.format(type="InventoryReserved", saga=SAGA),
    ],
    "payment": [
        # Every customer of the history paid in what it spent: the balances end at zero.
        f"""INSERT INTO accounts (customer_id, balance_cents, created_at, updated_at)
            SELECT customer_id, 0, min(at), max(at) FROM ({SAGA}) AS saga GROUP BY customer_id""",
        f"""INSERT INTO deposits (deposit_id, customer_id, amount_cents, created_at)
            SELECT md5('deposit-' || customer_id)::uuid, customer_id, 500 * count(*), min(at)
            FROM ({SAGA}) AS saga GROUP BY customer_id""",
        f"""INSERT INTO charges (payment_id, order_id, customer_id, amount_cents, created_at)
            SELECT md5('charge-' || n)::uuid, order_id, customer_id, 500, at
            FROM ({SAGA}) AS saga""",
        PUBLISHED.format(
            type="PaymentSucceeded", key="payment.succeeded", producer="payment", saga=SAGA
        ),
        CONSUMED.format(type="OrderCreated", saga=SAGA),
    ],
    "inventory": [
        # Every sku of the history was restocked with what it holds reserved.
        f"""INSERT INTO products (sku, available, reserved, updated_at)
            SELECT 'history-s' || mod(n, 100), 0, count(*), max(at) FROM ({SAGA}) AS saga
            GROUP BY 1""",
        f"""INSERT INTO restocks (restock_id, sku, quantity, created_at)
            SELECT md5('restock-' || mod(n, 100))::uuid, 'history-s' || mod(n, 100), count(*),
                   min(at)
            FROM ({SAGA}) AS saga GROUP BY mod(n, 100)""",
        f"""INSERT INTO reservations (reservation_id, order_id, items, created_at)
            SELECT md5('reservation-' || n)::uuid, order_id, {ITEMS}, at
            FROM ({SAGA}) AS saga""",
        PUBLISHED.format(
            type="InventoryReserved", key="inventory.reserved", producer="inventory", saga=SAGA
        ),
        CONSUMED.format(type="PaymentSucceeded", saga=SAGA),
    ],
}
FIVE_DAYS_SECONDS = 5 * 86_400


def history_order_id(config: StackConfig, n: int) -> str:
    """The order id of the history's saga number n, as the databases hold it."""
    url = config.admin_database_url("order").replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT md5('saga-history-' || %s::int)::uuid::text", [n]).fetchone()
    assert row is not None
    return str(row[0])


def write(config: StackConfig, count: int) -> float:
    """Write `count` finished sagas into the stack's three databases, then VACUUM ANALYZE
    and CHECKPOINT them, as a database long in service would be; the seconds it took."""
    started = time.monotonic()
    params = {"count": count, "spread": FIVE_DAYS_SECONDS / count}
    for service, statements in STATEMENTS.items():
        url = config.admin_database_url(service).replace("+psycopg", "")
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement, params)  # type: ignore[arg-type]
            conn.execute("VACUUM ANALYZE")
            # The write's dirty pages flushed now, not by a checkpoint during the measurement.
            conn.execute("CHECKPOINT")
    return time.monotonic() - started
