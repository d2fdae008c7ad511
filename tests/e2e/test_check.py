"""The consistency checker catches real bugs: a clean run passes, and each kind of corruption
(a double charge, a missing refund, an orphan reservation, a stuck order, an unpublished
outbox row) is reported with the order that carries it."""

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from scripts.ops.check import check, snapshot
from scripts.ops.dashboard_check import check_dashboard
from scripts.stack import Stack, StackConfig
from shared.audit import STREAM_OFFSET_HEADER, read_audit
from shared.broker import connect
from tests.clients.api import SagaClient
from tests.clients.database import sql
from tests.clients.invariants import wait_consistent
from tests.conftest import TEST_ENV
from tests.polling import wait_until

# The audit stream in segments of 50 kB, where the default is 50 MB: a few dozen sagas fill
# several, and RabbitMQ leaves an offset unused at the start of each (docs/DESIGN.md, 20).
SMALL_SEGMENTS = {"AUDIT_SEGMENT_BYTES": "50000"}


@pytest.fixture(scope="module")
def quiet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig.isolated(
        "sagacheck", tmp_path_factory.mktemp("check"), env=TEST_ENV | SMALL_SEGMENTS
    )
    with Stack(config).running() as stack:
        yield stack


async def stream_offsets(stack: Stack) -> list[int]:
    async with await connect(stack.config.amqp_url) as connection:
        messages = await read_audit(connection)
    return [int(str(m.headers[STREAM_OFFSET_HEADER])) for m in messages]


def test_the_dashboard_check_holds_across_segments_and_names_a_forged_offset(
    quiet_stack: Stack,
) -> None:
    """Invariant 7 over a stream whose offsets have gaps (the 20,000-saga soak's stream did):
    the projection holds every message once, at its offset; and one message projected as
    another is named by its offset."""
    stack = quiet_stack
    with SagaClient(stack) as saga:
        customer, sku = saga.funded_customer(1_000_000), saga.stocked_sku(1_000)
        orders = [saga.place_order(customer, (sku, 1, 100))["order_id"] for _ in range(60)]
        for order_id in orders:
            saga.wait_for_status(order_id, "CONFIRMED")
    wait_consistent(stack.config, 30, "the system to go quiet")
    offsets = asyncio.run(stream_offsets(stack))
    gaps = [o for o in range(offsets[-1]) if o not in set(offsets)]
    assert len(gaps) >= 2, f"the stream did not roll over to new segments: {offsets[-3:]}"

    held = check_dashboard(stack.config)
    assert held.violations == [] and held.checked >= len(offsets)
    # The follower read each gap twice, from a new connection, before it took it for the
    # stream's own (dashboard/follower.py).
    said = stack.log_path("dashboard").read_text()
    for gap in gaps:
        assert f"offsets {gap} to {gap} are unused in saga.audit: read twice" in said, gap

    forged = offsets[len(offsets) // 2]
    sql(stack, "dashboard", "UPDATE stream_messages SET message_id = 'forged' "
        "WHERE stream_offset = %s", forged)  # fmt: skip
    broken = check_dashboard(stack.config)
    assert any(
        f"holds another message at offset {forged} (projected as forged" in v
        for v in broken.violations
    ), broken.violations


def run_check(stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.ops.check", "--prefix", stack.config.database_prefix,
         "--amqp-url", stack.config.amqp_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_clean_system_passes_and_every_corruption_is_named(quiet_stack: Stack) -> None:
    stack = quiet_stack
    with SagaClient(stack) as saga:
        customer, sku, scarce = (
            saga.funded_customer(100_000),
            saga.stocked_sku(100),
            saga.stocked_sku(1),
        )
        confirmed = [saga.place_order(customer, (sku, 1, 500))["order_id"] for _ in range(4)]
        short = saga.place_order(customer, (scarce, 2, 700))["order_id"]
        for order_id in confirmed:
            saga.wait_for_status(order_id, "CONFIRMED")
        saga.wait_for_status(short, "REJECTED")
        wait_until(lambda: saga.payments(short)["refunds"], what="the refund")

    wait_consistent(stack.config, 30, "the system to go quiet")
    passing = run_check(stack)
    assert passing.returncode == 0, passing.stdout
    assert "no violations" in passing.stdout

    double, stuck, unpublished, _ = confirmed
    orphan = str(uuid.uuid4())
    # A double charge (the unique key that prevents it dropped first).
    sql(stack, "payment", "ALTER TABLE charges DROP CONSTRAINT charges_order_id_key")
    sql(
        stack, "payment",
        "INSERT INTO charges (payment_id, order_id, customer_id, amount_cents) "
        "SELECT gen_random_uuid(), order_id, customer_id, amount_cents FROM charges "
        "WHERE order_id = %s",
        double,
    )  # fmt: skip
    # A missing refund, an orphan reservation, a stuck order, an unpublished outbox row.
    sql(stack, "payment", "DELETE FROM refunds WHERE order_id = %s", short)
    sql(
        stack, "inventory",
        "INSERT INTO reservations (reservation_id, order_id, items) VALUES (gen_random_uuid(), %s, "
        "'[{\"sku\": \"ghost\", \"quantity\": 1, \"unit_price_cents\": 1}]')",
        orphan,
    )  # fmt: skip
    sql(stack, "order", "UPDATE orders SET status = 'PAID' WHERE order_id = %s", stuck)
    stack.stop("order-relay")  # or it would publish the row again at once, healing it
    sql(
        stack, "order",
        "UPDATE outbox SET published_at = NULL WHERE body->>'type' = 'OrderConfirmed' "
        "AND body->>'correlation_id' = %s",
        unpublished,
    )  # fmt: skip

    invariants = {i.name.split(".")[0]: i.violations for i in check(snapshot(stack.config))}
    assert [v for v in invariants["1"] if stuck in v] == [f"{stuck}: still PAID"]
    assert any(double in v and "charges [500, 500]" in v for v in invariants["2"]), invariants["2"]
    assert any(short in v and "1 charge(s) of 1400, 0 refund(s) of 0" in v for v in invariants["3"])
    assert any(customer in v for v in invariants["4a"]), invariants["4a"]
    assert any(orphan in v for v in invariants["4c"]), invariants["4c"]
    assert any(unpublished in v and "never published" in v for v in invariants["5"])

    failing = run_check(stack)
    assert failing.returncode == 1
    for order_id in (stuck, double, short, orphan, unpublished):
        assert order_id in failing.stdout
