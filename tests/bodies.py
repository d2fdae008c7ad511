"""Raw message bodies for tests that feed the decoder or the broker by hand."""

from datetime import UTC, datetime
from uuid import uuid4


def order_created_body(**changes: object) -> dict[str, object]:
    order_id = str(uuid4())
    body: dict[str, object] = {
        "message_id": str(uuid4()),
        "type": "OrderCreated",
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": order_id,
        "causation_id": None,
        "producer": "order",
        "data": {
            "order_id": order_id,
            "customer_id": "c1",
            "items": [{"sku": "s1", "quantity": 2, "unit_price_cents": 150}],
            "total_cents": 300,
            "deadline_at": datetime.now(UTC).isoformat(),
        },
    }
    body.update(changes)
    return body
