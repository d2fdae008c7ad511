"""`GET /sagas/{order_id}`: the orchestrator's saga instance and its history (SPEC.md,
"Orchestration mode"); 404 for an order without one (placed in choreography)."""

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from services.order.saga import SagaStatus, Send, Step
from services.order.tables import saga_history, saga_instances
from shared.http import answers
from shared.service import DatabaseDep

router = APIRouter(tags=["sagas"])


class SagaTransition(BaseModel):
    from_status: SagaStatus | None
    from_step: Step | None
    to_status: SagaStatus
    to_step: Step
    awaiting: list[Send]
    sent: list[Send]
    message_id: UUID | None
    at: datetime


class SagaOut(BaseModel):
    saga_id: UUID
    status: SagaStatus
    step: Step
    awaiting: list[Send]
    sends: int
    reason: str | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    history: list[SagaTransition]


@router.get("/sagas/{order_id}", response_model=SagaOut, responses=answers(404, 422, 503))
async def saga_of(order_id: UUID, database: DatabaseDep) -> Any:
    async with database.reading() as conn:
        query = sa.select(saga_instances).where(saga_instances.c.saga_id == order_id)
        saga = (await conn.execute(query)).first()
        if saga is None:
            raise HTTPException(404, f"no saga for order {order_id}")
        history = (
            await conn.execute(
                sa.select(saga_history)
                .where(saga_history.c.saga_id == order_id)
                .order_by(saga_history.c.id)
            )
        ).all()
    return {**saga._asdict(), "history": [row._asdict() for row in history]}
