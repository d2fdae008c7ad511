"""The consumer's batching layer (shared/batching.py) on a scratch database of payment's, with
payment's own handler: units of work that wait together commit in one transaction, each with
its own inbox row, effect and outbox rows; one that fails fails alone and the others are
committed each in a transaction of its own; a database that cannot be reached fails them all at
once."""

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString
from uuid import uuid4

import psycopg
from sqlalchemy.engine import make_url

from services.payment.handlers import charge_for_order, refund_for_failed_inventory
from shared.batching import Transactions
from shared.db import Database
from shared.envelope import Envelope, wrap
from shared.events import InventoryFailed, Item, OrderCreated
from shared.uow import UnitOfWork
from tests.clients.database import rows, waited_on
from tests.integration.handling import count_of, outbox_of
from tests.integration.test_payment_handlers import balance, customer_with
from tests.polling import eventually


def order_for(customer: str, cents: int = 100) -> OrderCreated:
    return OrderCreated(
        order_id=uuid4(),
        customer_id=customer,
        items=[Item(sku="shirt", quantity=1, unit_price_cents=cents)],
        total_cents=cents,
        deadline_at=datetime.now(UTC) + timedelta(seconds=30),
    )


class Delivery:
    """A message as the consumer applies it, remembering the transaction each attempt ran in."""

    def __init__(self, event: OrderCreated | InventoryFailed, fails: int = 0) -> None:
        self.event = event
        self.envelope = wrap(event, producer="test", causation_id=None)
        self.fails = fails  # how many of its first attempts fail
        self.transactions: list[int] = []

    async def work(self, uow: UnitOfWork) -> str | None:
        self.transactions.append(await uow.sql.scalar("SELECT txid_current()"))
        if not await uow.accept(self.envelope):
            return None
        if isinstance(self.event, OrderCreated):
            what = await charge_for_order(uow, self.event)
        else:
            what = await refund_for_failed_inventory(uow, self.event)
        if len(self.transactions) <= self.fails:
            raise RuntimeError("this message's handler fails")
        return what


Outcome = tuple[str | None, UnitOfWork] | BaseException


async def delivered(transactions: Transactions, deliveries: list[Delivery]) -> list[Outcome]:
    """Every delivery's work submitted at once, as concurrent deliveries are."""
    return await asyncio.gather(
        *(transactions.run(delivery.work, message=delivery.envelope) for delivery in deliveries),
        return_exceptions=True,
    )


def committed(outcomes: Sequence[Outcome]) -> list[tuple[str, UnitOfWork]]:
    """What each applied, failing on any exception and on any duplicate."""
    applied = []
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException), outcomes
        what, uow = outcome
        assert what is not None, "a new message is never a duplicate"
        applied.append((what, uow))
    return applied


IN_INBOX = "SELECT 1 FROM inbox WHERE message_id = %(id)s"


async def inbox_has(database: Database, delivery: Delivery) -> bool:
    return bool(await rows(database, IN_INBOX, id=delivery.envelope.message_id))


async def test_units_of_work_that_wait_together_commit_together_each_with_its_own_rows(
    payment: Database,
) -> None:
    customer = await customer_with(payment, 10_000)
    deliveries = [Delivery(order_for(customer)) for _ in range(6)]
    results = committed(await delivered(Transactions(payment, "payment", 16), deliveries))

    ran_in = [delivery.transactions for delivery in deliveries]
    assert all(len(attempts) == 1 for attempts in ran_in), ran_in
    assert len({attempts[0] for attempts in ran_in}) < len(deliveries), "no batch was made"
    for delivery, (what, uow) in zip(deliveries, results, strict=True):
        order_id = delivery.event.order_id
        assert what.startswith(f"charged 100 to {customer}")
        assert await inbox_has(payment, delivery)
        assert await count_of(payment, "charges", order_id) == 1
        # Its outbox row, caused by its own message, not by a neighbour's.
        assert await outbox_of(payment, order_id) == [
            ("PaymentSucceeded", str(delivery.envelope.message_id))
        ]
        assert [e.type for e in uow.emitted] == ["PaymentSucceeded"]
    assert await balance(payment, customer) == 10_000 - 600


async def test_two_messages_of_one_saga_in_a_batch_apply_in_order_the_second_seeing_the_first(
    payment: Database,
) -> None:
    customer = await customer_with(payment, 1_000)
    order = order_for(customer, 400)
    failed = InventoryFailed(order_id=order.order_id, reason="out_of_stock")
    deliveries = [Delivery(order), Delivery(failed)]
    results = committed(await delivered(Transactions(payment, "payment", 16), deliveries))

    assert deliveries[0].transactions == deliveries[1].transactions  # one transaction
    assert [what for what, _ in results] == [
        f"charged 400 to {customer} (balance 600)",
        f"refunded 400 to {customer} (out_of_stock)",
    ]
    assert await count_of(payment, "refunds", order.order_id) == 1
    # The batch's outbox rows, written by one statement, in the order they were emitted.
    assert [kind for kind, _ in await outbox_of(payment, order.order_id)] == [
        "PaymentSucceeded",
        "PaymentRefunded",
    ]


async def test_a_failing_unit_of_work_fails_alone_and_the_others_commit_each_alone(
    payment: Database,
) -> None:
    customer = await customer_with(payment, 10_000)
    deliveries = [Delivery(order_for(customer), fails=100 if i == 2 else 0) for i in range(5)]
    results = await delivered(Transactions(payment, "payment", 16), deliveries)

    failing = deliveries[2]
    assert isinstance(results[2], RuntimeError)
    # Its verdict is its own: it failed in the batch, and again alone.
    assert len(failing.transactions) == 2, failing.transactions
    assert not await inbox_has(payment, failing)
    assert await count_of(payment, "charges", failing.event.order_id) == 0
    assert await outbox_of(payment, failing.event.order_id) == []

    others = [d for d in deliveries if d is not failing]
    # Each of the others was applied again, after the batch's rollback, in a transaction of
    # its own; the two staged before the failure ran twice, with one effect.
    last = [delivery.transactions[-1] for delivery in others]
    assert len(set(last)) == len(others), [d.transactions for d in deliveries]
    for delivery in others:
        assert await inbox_has(payment, delivery)
        assert await count_of(payment, "charges", delivery.event.order_id) == 1
    assert await balance(payment, customer) == 10_000 - 400


async def test_a_failure_only_the_batch_met_is_not_the_message_s_verdict(
    payment: Database,
) -> None:
    # As a deadlock between two processes' batches would: the first attempt fails, in the
    # batch; alone, it commits.
    customer = await customer_with(payment, 10_000)
    deliveries = [Delivery(order_for(customer), fails=1 if i == 1 else 0) for i in range(4)]
    committed(await delivered(Transactions(payment, "payment", 16), deliveries))
    assert len(deliveries[1].transactions) == 2
    for delivery in deliveries:
        assert await count_of(payment, "charges", delivery.event.order_id) == 1


async def test_with_batching_off_every_unit_of_work_has_a_transaction_of_its_own(
    payment: Database,
) -> None:
    customer = await customer_with(payment, 10_000)
    deliveries = [Delivery(order_for(customer)) for _ in range(4)]
    committed(await delivered(Transactions(payment, "payment", 1), deliveries))
    assert len({d.transactions[0] for d in deliveries}) == len(deliveries)


async def test_a_database_out_of_reach_fails_the_whole_batch_with_one_wait(
    payment: Database,
) -> None:
    # A port nothing listens on: every checkout waits for the pool's timeout.
    url = make_url(payment.url).set(port=9).render_as_string(hide_password=False)
    away = Database(url, pool_size=2)
    await away.open()
    try:
        deliveries = [Delivery(order_for("nobody")) for _ in range(4)]
        results = await delivered(Transactions(away, "payment", 16), deliveries)
    finally:
        await away.close()
    assert all(isinstance(result, Exception) for result in results), results
    # One checkout failed for the batch, and that one failure is every message's answer.
    assert len({id(result) for result in results}) == 1, results
    assert not any(delivery.transactions for delivery in deliveries)


async def test_a_unit_of_work_that_swallows_a_statement_s_error_is_not_taken_for_committed(
    payment: Database,
) -> None:
    # PostgreSQL answers the COMMIT of a transaction that an error broke with a rollback and
    # no error: had the batch committed anyway, every unit of work of it would have been told
    # it committed, and none of their rows would exist.
    accepted = [wrap(order_for("alice"), "test", None) for _ in range(3)]
    swallowing = wrap(order_for("bob"), "test", None)

    async def accepts(envelope: Envelope, uow: UnitOfWork) -> str:
        await uow.accept(envelope)
        return "accepted"

    async def swallows(uow: UnitOfWork) -> str:
        await uow.accept(swallowing)
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            await uow.sql.execute("SELECT 1 / 0")
        return "swallowed"

    transactions = Transactions(payment, "payment", 16)
    outcomes = await asyncio.gather(
        *(transactions.run(functools.partial(accepts, envelope)) for envelope in accepted),
        transactions.run(swallows),
        return_exceptions=True,
    )
    *others, refused = outcomes
    # Refused in the batch, then again alone; the others committed, each alone.
    assert isinstance(refused, psycopg.errors.InFailedSqlTransaction), outcomes
    assert [what for what, _ in committed(others)] == ["accepted"] * 3
    for envelope in accepted:
        assert await rows(payment, IN_INBOX, id=envelope.message_id)
    assert not await rows(payment, IN_INBOX, id=swallowing.message_id)


async def test_a_batch_records_its_messages_at_once_and_a_copy_is_a_duplicate_in_it_too(
    payment: Database,
) -> None:
    # One message the inbox holds from before, and one delivered twice into the same batch
    # (a redelivery beside its original): each applies once, in the order listed.
    customer = await customer_with(payment, 10_000)
    before = Delivery(order_for(customer))
    committed(await delivered(Transactions(payment, "payment", 1), [before]))
    twice = Delivery(order_for(customer))
    copy = Delivery(twice.event)
    copy.envelope = twice.envelope
    deliveries = [Delivery(order_for(customer)), twice, copy, Delivery(before.event)]
    deliveries[3].envelope = before.envelope
    results = await delivered(Transactions(payment, "payment", 16), deliveries)

    assert len({d.transactions[0] for d in deliveries}) == 1, "no batch was made"
    assert all(len(d.transactions) == 1 for d in deliveries), "the batch did not commit"
    whats = [None if isinstance(r, BaseException) else r[0] for r in results]
    assert whats[0] is not None and whats[0].startswith("charged")
    assert whats[1] is not None and whats[1].startswith("charged")
    assert whats[2:] == [None, None], whats  # the copy and the one from before
    for delivery in deliveries:
        assert await count_of(payment, "charges", delivery.event.order_id) == 1
    assert await balance(payment, customer) == 10_000 - 300


async def delivered_while_held(
    payment: Database,
    deliveries: list[Delivery],
    gave_up: Callable[[], bool],
    lock: LiteralString,
    **params: Any,
) -> None:
    """The deliveries submitted while another transaction holds what `lock` takes, until the
    batch has given up (`gave_up`: a delivery has begun its attempt alone) and a delivery alone
    waits for the lock, as PostgreSQL sees it; each committed in the end."""
    async with payment.connect() as holder:
        await holder.execute(lock, **params)
        outcomes = asyncio.ensure_future(
            delivered(Transactions(payment, "payment", 16), deliveries)
        )

        async def batch_gave_up() -> bool:
            return gave_up()

        await eventually(batch_gave_up, 15, "the batch to give up")
        await waited_on(payment, holder)
        assert not outcomes.done(), "nothing waited for the lock"
        await holder.connection.commit()
    committed(await outcomes)


async def test_a_batch_whose_saga_lock_is_held_gives_up_and_each_goes_alone(
    payment: Database,
) -> None:
    # One saga's advisory lock is held elsewhere: the batch's inbox statement waits for it,
    # gives up after 100 ms, and each message goes alone.
    customer = await customer_with(payment, 10_000)
    deliveries = [Delivery(order_for(customer)) for _ in range(3)]
    saga = str(deliveries[1].event.order_id)
    # In the batch the inbox statement fails before any work runs: a work begun is one alone.
    await delivered_while_held(
        payment, deliveries, lambda: bool(deliveries[1].transactions),
        "SELECT pg_advisory_xact_lock(hashtextextended(%(saga)s, 0))", saga=saga,
    )  # fmt: skip
    assert len({d.transactions[-1] for d in deliveries}) == 3, "not each alone"
    assert await balance(payment, customer) == 10_000 - 300


async def test_a_batch_that_waits_on_a_lock_gives_up_and_each_goes_alone(
    payment: Database,
) -> None:
    # The customer's account is held elsewhere, as the other side of a lock cycle would hold
    # it. The batch gives up after 100 ms; alone, each waits its turn.
    customer = await customer_with(payment, 10_000)
    deliveries = [Delivery(order_for(customer)) for _ in range(3)]
    await delivered_while_held(
        payment, deliveries, lambda: len(deliveries[0].transactions) == 2,
        "SELECT 1 FROM accounts WHERE customer_id = %(c)s FOR UPDATE", c=customer,
    )  # fmt: skip
    # The first met the lock in the batch and gave up, then waited for it alone; the batch
    # never reached the other two, which went alone after it.
    assert [len(d.transactions) for d in deliveries] == [2, 1, 1], [
        d.transactions for d in deliveries
    ]
    assert await balance(payment, customer) == 10_000 - 300
