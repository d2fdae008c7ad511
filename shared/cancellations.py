"""Cancelled-order tombstones, for the services that act on a saga after the order service.

Messages arrive in any order: payment may see OrderCancelled before the OrderCreated it
cancels, inventory before the PaymentSucceeded. Each remembers every cancellation it has seen,
for good, and checks it before acting, so a late event never charges or reserves for an order
that is already cancelled. The check and the remembering both run under the saga's advisory
lock (shared/inbox.py), so they cannot race.
"""

from uuid import UUID

from shared.db import Sql

# The table is created by shared/migrations.py (`create_cancellations_table`), in payment's and
# inventory's first migrations.

REMEMBER = """
    INSERT INTO cancelled_orders (order_id, reason) VALUES (%(order_id)s, %(reason)s)
    ON CONFLICT (order_id) DO NOTHING
"""


async def remember(sql: Sql, order_id: UUID, reason: str) -> None:
    await sql.execute(REMEMBER, order_id=order_id, reason=reason)
