"""The saga metrics (SPEC.md, "Metrics") count what the databases hold, and a real Prometheus
scraping a real stack fires the shipped alert when a process dies.

A stack of its own, so its counters start at zero and nothing another test left in flight is
counted; Prometheus (Debian's package) scrapes every process of it every second.
"""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.perf.load import Load, Mix
from scripts.stack import Stack, StackConfig
from scripts.stack.prometheus import Prometheus
from tests.clients.api import SagaClient
from tests.clients.broker import broker
from tests.clients.database import sql
from tests.conftest import TEST_ENV
from tests.polling import eventually, wait_until

pytestmark = pytest.mark.skipif(
    Prometheus.binary() is None, reason="no prometheus here (Debian's package; .ci/run installs it)"
)
MIX = Mix(customers=12, poor_ratio=0.25, skus=6, scarce_ratio=0.5, scarce_units=3, cancel_ratio=0.1)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Prometheus]]:
    directory = tmp_path_factory.mktemp("metrics")
    config = StackConfig.isolated("sagatest", directory, env=TEST_ENV)
    with Stack(config).running() as stack:
        prometheus = Prometheus(config, directory / "prometheus", interval="1s")
        prometheus.start()
        try:
            yield stack, prometheus
        finally:
            prometheus.stop()


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample a /metrics page shows, by name and labels."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_label(found: dict, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for (sample, sample_labels), value in found.items():
        if sample == name and value:
            as_dict = dict(sample_labels)
            counts[tuple(as_dict[label] for label in labels)] += int(value)
    return counts


def a_release(stack: Stack) -> None:
    """One saga that ends in a release, made sure of: the load's cancels come right after the
    POST and almost always reach inventory before its reservation does. Here inventory is down
    while the order is paid and cancelled, then takes one delivery at a time: the reservation
    first, then the cancel that releases it. Inventory restarts before any count of it."""
    with SagaClient(stack) as saga:
        customer, sku = saga.funded_customer(1_000), saga.stocked_sku(1)
        stack.stop("inventory")
        order_id = saga.place_order(customer, (sku, 1, 100))["order_id"]
        saga.wait_for_status(order_id, "PAID")
        assert saga.order.post(f"/orders/{order_id}/cancel").status_code == 202
        stack.start("inventory", CONSUMER_PREFETCH="1")
        stack.wait_ready("inventory")
        wait_until(
            lambda: [r["status"] for r in saga.reservations(order_id)] == ["RELEASED"],
            what="the reservation, then its release",
        )


async def test_the_saga_metrics_count_what_the_databases_hold(
    watched: tuple[Stack, Prometheus],
) -> None:
    stack, prometheus = watched
    await asyncio.to_thread(a_release, stack)
    load = Load(stack.config.base_urls(), seed=7, mix=MIX)
    try:
        result = await load.run_load(120, concurrency=12, rate=None, alone=True)
    finally:
        await load.close()
    assert set(result.outcomes) == {"CONFIRMED", "REJECTED", "CANCELLED"}, result.outcomes

    held = Counter({
        (status.lower(), reason or "none"): count
        for status, reason, count in sql(
            stack, "order", "SELECT status, reason, count(*) FROM orders GROUP BY 1, 2"
        )
    })  # fmt: skip
    order = samples(stack.config.base_url("order"))
    assert by_label(order, "saga_sagas_finished_total", "outcome", "reason") == held
    by_outcome: Counter[tuple[str, ...]] = Counter()
    for (outcome, _), count in held.items():
        by_outcome[(outcome,)] += count
    assert by_label(order, "saga_duration_seconds_count", "outcome") == by_outcome
    [[refunds]] = sql(stack, "payment", "SELECT count(*) FROM refunds")
    [[releases]] = sql(stack, "inventory", "SELECT count(*) FROM releases")
    assert refunds > 0 and releases > 0
    payment, inventory = (samples(stack.config.base_url(s)) for s in ("payment", "inventory"))
    assert by_label(payment, "saga_compensations_total", "kind") == {("refund",): refunds}
    assert by_label(inventory, "saga_compensations_total", "kind") == {("release",): releases}

    def gauge(name: str) -> float:
        return samples(stack.config.base_url("order"))[(name, frozenset())]

    wait_until(lambda: gauge("saga_sagas_in_flight") == 0, what="nothing in flight")
    assert gauge("saga_sagas_overdue") == 0

    # The same numbers through the real server, once it has scraped them.
    def scraped() -> dict[str, int]:
        rows = prometheus.query("sum by (outcome) (saga_sagas_finished_total)")
        return {row["metric"]["outcome"]: int(float(row["value"][1])) for row in rows}

    expected = {outcome: n for (outcome,), n in by_outcome.items()}
    wait_until(lambda: scraped() == expected, what=f"Prometheus to scrape {expected}")


async def test_the_dlq_and_relay_lag_gauges(watched: tuple[Stack, Prometheus]) -> None:
    stack, _ = watched
    async with broker(stack) as exchange:
        await exchange.publish(aio_pika.Message(b"not json"), routing_key="order.created")
    queue = {frozenset({("queue", "payment.events.dlq")})}

    def dlq_depth() -> float:
        found = samples(stack.config.base_url("payment"))
        return next((v for (n, labels), v in found.items()
                     if n == "saga_dlq_messages" and labels in queue), 0.0)  # fmt: skip

    wait_until(lambda: dlq_depth() == 1, what="saga_dlq_messages to show the poison")
    relay = f"http://{stack.config.metrics_addresses()['order-relay']}"

    def relay_gauges() -> tuple[float, float]:
        found = samples(relay)
        return (found[("saga_relay_lag_seconds", frozenset())],
                found[("saga_relay_pending_rows", frozenset())])  # fmt: skip

    # The gauges are read from the outbox every 5 s: a reading may still hold the earlier
    # test's last rows, pending for a moment. Nothing is left waiting, and they come to 0.
    wait_until(lambda: relay_gauges() == (0, 0), 20, "the relay's lag and pending rows to be 0")


async def test_a_real_prometheus_fires_process_down_when_payment_dies(
    watched: tuple[Stack, Prometheus],
) -> None:
    stack, prometheus = watched

    def states() -> dict[str, str]:
        return {a["labels"]["process"]: a["state"] for a in prometheus.alerts()
                if a["labels"]["alertname"] == "SagaProcessDown"}  # fmt: skip

    async def all_up() -> bool:
        rows = prometheus.query('up{job="saga"}')
        return len(rows) == 7 and all(row["value"][1] == "1" for row in rows)

    await eventually(all_up, within=30, what="every process scraped")
    assert states() == {}
    stack.kill("payment")
    try:
        wait_until(lambda: states().get("payment") == "pending", 15, "the alert to be pending")
        wait_until(lambda: states() == {"payment": "firing"}, 60, "SagaProcessDown to fire")
    finally:
        stack.start("payment")
        stack.wait_ready("payment")
    wait_until(lambda: states() == {}, 30, "the alert to resolve")


def test_the_stack_tells_each_relay_its_metrics_port(tmp_path: Path) -> None:
    config = StackConfig.isolated("sagatest", tmp_path)
    stack = Stack(config)
    ports = {stack.env_for(relay)["METRICS_PORT"] for relay in config.relay_ports}
    assert len(ports) == 3
    assert "METRICS_PORT" not in stack.env_for("order-relay.2")
