"""The consistency checker (scripts/ops/check.py) over hand-built snapshots: quiet on a system
that adds up, and, for every invariant, a corruption it must report, naming the order, customer,
sku, queue or message at fault. The e2e and chaos tiers trust a quiet checker; these tests are
why a quiet checker means something."""

from typing import Any

import pytest

from scripts.ops.check import Invariant, Snapshot, check
from services.order.saga import ACTIVE, SagaStatus
from services.order.state import IN_FLIGHT, Status
from shared.system import SERVICE_NAMES, Mode
from shared.topology import dead_letter_queue, work_queue

CUSTOMER = "alice"
CONFIRMED_ID = "order-confirmed"  # charged 2500, its lines RESERVED
REJECTED_ID = "order-rejected"  # charged 1500, then refunded (inventory failed)
CANCELLED_ID = "order-cancelled"  # cancelled before any charge
UNKNOWN_ID = "order-unknown"  # in no table of the order service
MESSAGE_IDS = ("message-1", "message-2", "message-3")
ALL_WORK_QUEUES = sorted({work_queue(service, mode) for service in SERVICE_NAMES for mode in Mode})


def line(sku: str, quantity: int, unit_price_cents: int = 500) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price_cents": unit_price_cents}


CONFIRMED_LINES = [line("apple", 2, 1000), line("pear", 1)]  # 2500
REJECTED_LINES = [line("pear", 3)]  # 1500
CANCELLED_LINES = [line("apple", 1, 1000)]  # 1000


def order(status: Status, lines: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum(item["quantity"] * item["unit_price_cents"] for item in lines)
    return {"customer_id": CUSTOMER, "items": lines, "total_cents": total, "status": status}


def charge(amount_cents: int) -> dict[str, Any]:
    return {"customer_id": CUSTOMER, "amount_cents": amount_cents}


def refund(amount_cents: int) -> dict[str, Any]:
    return {"amount_cents": amount_cents}


def reservation(lines: list[dict[str, Any]], status: str = "RESERVED") -> dict[str, Any]:
    return {"items": lines, "status": status}


def clean(mode: Mode = Mode.CHOREOGRAPHY) -> Snapshot:
    """Three orders that ended each way, and the money, stock and messages that agree with them.
    A fresh one each call: a test corrupts its own copy in place."""
    queues = [
        f(service, mode) for service in SERVICE_NAMES for f in (work_queue, dead_letter_queue)
    ]
    sagas: dict[str, str] = {
        CONFIRMED_ID: SagaStatus.COMPLETED,
        REJECTED_ID: SagaStatus.COMPENSATED,
        CANCELLED_ID: SagaStatus.COMPENSATED,
    }
    return Snapshot(
        orders={
            CONFIRMED_ID: order(Status.CONFIRMED, CONFIRMED_LINES),
            REJECTED_ID: order(Status.REJECTED, REJECTED_LINES),
            CANCELLED_ID: order(Status.CANCELLED, CANCELLED_LINES),
        },
        charges={CONFIRMED_ID: [charge(2500)], REJECTED_ID: [charge(1500)]},
        refunds={REJECTED_ID: [refund(1500)]},
        accounts={CUSTOMER: 7500},  # 10000 - 2500 - 1500 + 1500
        deposits={CUSTOMER: 10000},
        reservations={CONFIRMED_ID: [reservation(CONFIRMED_LINES)]},
        products={
            "apple": {"available": 8, "reserved": 2},
            "pear": {"available": 4, "reserved": 1},
        },
        restocks={"apple": 10, "pear": 5},
        unpublished={service: [] for service in SERVICE_NAMES},
        published_ids=set(MESSAGE_IDS),
        queue_depths=dict.fromkeys(queues, 0),
        audit_ids={*MESSAGE_IDS, "an-observation"},  # the stream holds more than the outboxes
        sagas=sagas if mode is Mode.ORCHESTRATION else {},
        mode=mode,
    )


def by_number(invariants: list[Invariant]) -> dict[str, Invariant]:
    """`{"4b": <4b. per sku: ...>}`: each invariant by the number its name starts with."""
    return {invariant.name.split(".")[0]: invariant for invariant in invariants}


def assert_reports(
    snapshot: Snapshot, number: str, subject: str, saying: str = "", allowed_dlq: int = 0
) -> None:
    """Invariant `number` is broken, by `subject` alone, with a violation that says `saying`."""
    invariant = by_number(check(snapshot, allowed_dlq))[number]
    assert invariant.violations, f"{invariant.name}: quiet, expected a violation by {subject}"
    for violation in invariant.violations:
        assert violation.startswith(f"{subject}: "), f"{invariant.name}: {violation}"
        assert saying in violation, f"{invariant.name}: {violation!r} lacks {saying!r}"


def assert_quiet(snapshot: Snapshot, number: str, allowed_dlq: int = 0) -> None:
    invariant = by_number(check(snapshot, allowed_dlq))[number]
    assert invariant.violations == [], invariant.name


@pytest.mark.parametrize(
    ("mode", "numbers"),
    [
        pytest.param(Mode.CHOREOGRAPHY, ["1", "2", "3", "4a", "4b", "4c", "5"], id="choreography"),
        pytest.param(
            Mode.ORCHESTRATION, ["1", "2", "3", "4a", "4b", "4c", "5", "6"], id="orchestration"
        ),
    ],
)
def test_a_clean_snapshot_breaks_nothing_and_every_invariant_checks_something(
    mode: Mode, numbers: list[str]
) -> None:
    invariants = by_number(check(clean(mode)))
    assert list(invariants) == numbers
    for invariant in invariants.values():
        assert invariant.violations == [], invariant.name
        assert invariant.checked > 0, invariant.name


@pytest.mark.parametrize("status", sorted(IN_FLIGHT))
def test_1_an_order_still_in_flight(status: Status) -> None:
    snapshot = clean()
    snapshot.orders[CANCELLED_ID]["status"] = status
    assert_reports(snapshot, "1", CANCELLED_ID, f"still {status}")


PAID = [charge(2500)]
HELD = [reservation(CONFIRMED_LINES)]


def with_records(
    order_id: str,
    charges: list[dict[str, Any]],
    refunds: list[dict[str, Any]],
    reservations: list[dict[str, Any]],
) -> Snapshot:
    """The clean snapshot, with these charges, refunds and reservations for one order."""
    snapshot = clean()
    snapshot.charges[order_id] = charges
    snapshot.refunds[order_id] = refunds
    snapshot.reservations[order_id] = reservations
    return snapshot


@pytest.mark.parametrize(
    ("charges", "refunds", "reservations", "saying"),
    [
        pytest.param([], [], HELD, "charges []", id="no-charge"),
        pytest.param(PAID * 2, [], HELD, "charges [2500, 2500]", id="two-charges"),
        pytest.param([charge(2400)], [], HELD, "charges [2400], total 2500", id="wrong-amount"),
        pytest.param(PAID, [refund(2500)], HELD, "refunded [2500]", id="refunded"),
        pytest.param(PAID, [], [], "0 RESERVED", id="no-reservation"),
        pytest.param(PAID, [], HELD * 2, "2 RESERVED", id="two-reservations"),
        pytest.param(
            PAID,
            [],
            [reservation([line("apple", 2), line("pear", 2)])],
            "not matching its lines",
            id="other-lines",
        ),
        pytest.param(
            PAID, [], [reservation(CONFIRMED_LINES, "RELEASED")], "0 RESERVED", id="released-only"
        ),
    ],
)
def test_2_a_confirmed_order_has_one_charge_of_its_total_no_refund_and_its_lines_reserved(
    charges: list[dict[str, Any]],
    refunds: list[dict[str, Any]],
    reservations: list[dict[str, Any]],
    saying: str,
) -> None:
    snapshot = with_records(CONFIRMED_ID, charges, refunds, reservations)
    assert_reports(snapshot, "2", CONFIRMED_ID, saying)


@pytest.mark.parametrize("order_id", [REJECTED_ID, CANCELLED_ID])
@pytest.mark.parametrize(
    ("charges", "refunds", "reservations", "saying"),
    [
        pytest.param([charge(1500)], [], [], "1 charge(s) of 1500, 0 refund", id="not-refunded"),
        pytest.param(
            [charge(1500)], [refund(1500)] * 2, [], "2 refund(s) of 3000", id="refunded-twice"
        ),
        pytest.param(
            [charge(1500)] * 2,
            [refund(1500)] * 2,
            [],
            "2 charge(s) of 3000, 2 refund(s)",
            id="charged-and-refunded-twice",
        ),
        pytest.param(
            [charge(750)] * 2, [refund(1500)], [], "2 charge(s) of 1500", id="charged-in-halves"
        ),
        pytest.param(
            [charge(1500)], [refund(750)] * 2, [], "2 refund(s) of 1500", id="refunded-in-halves"
        ),
        pytest.param([], [], [reservation(REJECTED_LINES)], "still RESERVED", id="still-held"),
    ],
)
def test_3_a_rejected_or_cancelled_order_kept_no_money_and_holds_no_stock(
    order_id: str,
    charges: list[dict[str, Any]],
    refunds: list[dict[str, Any]],
    reservations: list[dict[str, Any]],
    saying: str,
) -> None:
    snapshot = with_records(order_id, charges, refunds, reservations)
    assert_reports(snapshot, "3", order_id, saying)


def test_3_a_released_reservation_of_a_rejected_order_is_no_violation() -> None:
    snapshot = clean()
    snapshot.reservations[REJECTED_ID] = [reservation(REJECTED_LINES, "RELEASED")]
    assert_quiet(snapshot, "3")


def test_4a_a_balance_that_differs_from_deposits_less_charges_plus_refunds() -> None:
    snapshot = clean()
    snapshot.accounts[CUSTOMER] = 7400
    assert_reports(snapshot, "4a", CUSTOMER, "balance 7400, deposits - charges + refunds = 7500")


def test_4a_a_negative_balance_even_when_it_matches_its_ledger() -> None:
    snapshot = clean()
    snapshot.deposits[CUSTOMER] = 1000
    snapshot.accounts[CUSTOMER] = -1500
    assert_reports(snapshot, "4a", CUSTOMER, "balance -1500, deposits - charges + refunds = -1500")


def test_4b_reserved_that_differs_from_the_reserved_units() -> None:
    snapshot = clean()
    snapshot.products["apple"]["reserved"] = 3
    assert_reports(snapshot, "4b", "apple", "reserved 3 (RESERVED units 2)")


def test_4b_available_that_differs_from_restocks_less_the_reserved_units() -> None:
    snapshot = clean()
    snapshot.products["pear"]["available"] = 5
    assert_reports(snapshot, "4b", "pear", "available 5 (expected 4)")


def test_4b_a_negative_available_even_when_it_matches_its_ledger() -> None:
    snapshot = clean()
    snapshot.restocks["apple"] = 1
    snapshot.products["apple"]["available"] = -1
    assert_reports(snapshot, "4b", "apple", "available -1 (expected -1)")


def test_4c_a_charge_for_an_order_the_order_service_does_not_know() -> None:
    snapshot = clean()
    snapshot.charges[UNKNOWN_ID] = [charge(100)]
    assert_reports(snapshot, "4c", UNKNOWN_ID, "a charge for an order")


def test_4c_a_reservation_for_an_order_the_order_service_does_not_know() -> None:
    snapshot = clean()
    snapshot.reservations[UNKNOWN_ID] = [reservation(CANCELLED_LINES, "RELEASED")]
    assert_reports(snapshot, "4c", UNKNOWN_ID, "a reservation for an order")


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_5_an_unpublished_outbox_row_names_its_order_and_service(service: str) -> None:
    snapshot = clean()
    snapshot.unpublished[service] = [CONFIRMED_ID]
    assert_reports(snapshot, "5", CONFIRMED_ID, f"an outbox row in {service} never published")


@pytest.mark.parametrize("queue", ALL_WORK_QUEUES)
def test_5_a_work_queue_holds_nothing_whatever_a_dlq_may_hold(queue: str) -> None:
    snapshot = clean()
    snapshot.queue_depths[queue] = 1
    assert_reports(snapshot, "5", queue, "1 message(s) waiting (expected at most 0)", allowed_dlq=2)


def test_5_a_dlq_holding_more_than_was_injected() -> None:
    snapshot = clean()
    dlq = dead_letter_queue("payment", Mode.CHOREOGRAPHY)
    snapshot.queue_depths[dlq] = 3
    assert_reports(snapshot, "5", dlq, "3 message(s) waiting (expected at most 2)", allowed_dlq=2)


def test_5_a_dlq_holding_exactly_what_was_injected_is_no_violation() -> None:
    snapshot = clean()
    snapshot.queue_depths[dead_letter_queue("payment", Mode.CHOREOGRAPHY)] = 2
    assert_quiet(snapshot, "5", allowed_dlq=2)


def test_5_a_published_message_missing_from_the_audit_stream() -> None:
    snapshot = clean()
    snapshot.published_ids.add("message-lost")
    assert_reports(snapshot, "5", "message-lost", "published but not in saga.audit")


def test_6_an_orchestrated_order_without_a_saga_instance() -> None:
    snapshot = clean(Mode.ORCHESTRATION)
    del snapshot.sagas[REJECTED_ID]
    assert_reports(snapshot, "6", REJECTED_ID, "an order without a saga instance")


@pytest.mark.parametrize(
    ("order_id", "saga"),
    [
        (CONFIRMED_ID, SagaStatus.COMPENSATED),
        (REJECTED_ID, SagaStatus.COMPLETED),
        (CANCELLED_ID, SagaStatus.COMPLETED),
    ],
)
def test_6_a_saga_that_ended_otherwise_than_its_order(order_id: str, saga: SagaStatus) -> None:
    snapshot = clean(Mode.ORCHESTRATION)
    snapshot.sagas[order_id] = saga
    status = snapshot.orders[order_id]["status"]
    assert_reports(snapshot, "6", order_id, f"saga {saga}, order {status}")


@pytest.mark.parametrize("saga", sorted(ACTIVE | {SagaStatus.NEEDS_ATTENTION}))
def test_6_a_saga_that_has_not_ended(saga: SagaStatus) -> None:
    snapshot = clean(Mode.ORCHESTRATION)
    snapshot.sagas[CONFIRMED_ID] = saga
    assert_reports(snapshot, "6", CONFIRMED_ID, f"saga {saga}, order CONFIRMED")


def test_6_is_not_reported_in_choreography_without_saga_rows() -> None:
    assert "6" not in by_number(check(clean()))


def test_6_in_choreography_checks_the_saga_rows_left_but_asks_no_order_for_one() -> None:
    snapshot = clean()
    snapshot.sagas[REJECTED_ID] = SagaStatus.RUNNING  # left by an orchestrated run before
    assert_reports(snapshot, "6", REJECTED_ID, "saga RUNNING, order REJECTED")
