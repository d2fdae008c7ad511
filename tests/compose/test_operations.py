"""What an operator of the compose stack gets besides the saga: Prometheus scraping every process
with the shipped alert rules, and (the tracing profile, which the session's compose stack runs)
each saga's trace in the trace viewer, linked from the dashboard."""

from pathlib import Path

import httpx
import yaml

from scripts.stack.compose import PROMETHEUS_PORT, TRACE_VIEWER_PORT
from shared.system import PROCESSES
from tests.clients.api import SagaClient
from tests.compose.conftest import ComposeStack
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_prometheus_scrapes_every_process_and_runs_the_alert_rules(
    compose_stack: ComposeStack,
) -> None:
    prometheus = f"http://127.0.0.1:{PROMETHEUS_PORT.of(compose_stack.env)}"

    def targets_up() -> dict[str, str] | None:
        active = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]
        health = {t["labels"]["process"]: t["health"] for t in active["activeTargets"]}
        return health if set(health) == set(PROCESSES) and set(health.values()) == {"up"} else None

    wait_until(targets_up, 60, "Prometheus to scrape every process")
    shipped = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    expected = {rule["alert"] for group in shipped["groups"] for rule in group["rules"]}
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == expected
    assert {rule["health"] for rule in loaded.values()} == {"ok"}
    # The stack is healthy: nothing fires (a down process, a dead letter...).
    assert {name for name, rule in loaded.items() if rule["state"] == "firing"} == set()


def test_a_sagas_trace_reaches_the_trace_viewer_and_the_dashboard_links_to_it(
    compose_stack: ComposeStack,
) -> None:
    with SagaClient(compose_stack) as saga:
        customer, sku = saga.funded_customer(1_000), saga.stocked_sku(2)
        order_id = saga.place_order(customer, (sku, 1, 400))["order_id"]
        saga.wait_for_status(order_id, "CONFIRMED")

    dashboard = compose_stack.config.dashboard_url
    trace_id = wait_until(
        lambda: httpx.get(f"{dashboard}/api/sagas/{order_id}", timeout=5).json().get("trace_id"),
        30,
        "the dashboard to know the saga's trace",
    )
    viewer = f"http://127.0.0.1:{TRACE_VIEWER_PORT.of(compose_stack.env)}"

    def processes_in_trace() -> set[str] | None:
        spans = httpx.get(
            f"{viewer}/v1/projects/default/spans/otlpv1",
            params={"trace_id": trace_id, "limit": 1000},
            timeout=10,
        ).json()["data"]
        names = {span["name"] for span in spans}
        # Every hop of the happy path, from the POST to the last delivery.
        wanted = {"publish OrderCreated", "process OrderCreated", "process InventoryReserved"}
        return names if wanted <= names else None

    names = wait_until(processes_in_trace, 30, f"the trace {trace_id} in the viewer")
    assert any(name.startswith("POST /orders") for name in names), names

    page = httpx.get(f"{dashboard}/sagas/{order_id}", timeout=5).text
    link = f"http://127.0.0.1:{TRACE_VIEWER_PORT.of(compose_stack.env)}"
    assert f'href="{link}/projects/UHJvamVjdDox/traces/{trace_id}"' in page
    assert (
        httpx.get(f"{link}/projects/UHJvamVjdDox/traces/{trace_id}", timeout=5).status_code == 200
    )
