"""What every service process has besides its domain: lifespan, consumer, health and metrics.

`build_app` is the one place a service is wired together (its bootstrap): the service passes
its name, settings, handler table, routes and background tasks.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.context import Context
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import OperationalError

from shared import http, log, tracing
from shared.batching import Transactions, Work
from shared.broker import BrokerLink
from shared.consumer import Consumer
from shared.db import Database
from shared.faults import Faults
from shared.housekeeping import PRUNE_INBOX, run_pruning
from shared.metrics import READY
from shared.settings import ServiceSettings
from shared.system import Mode, service_of
from shared.uow import Handler

logger = logging.getLogger("service")

T = TypeVar("T")

# A background task of the service (the order reaper, say): runs until cancelled.
BackgroundTask = Callable[[Database], Coroutine[Any, Any, None]]


class Runtime:
    """The process's long-lived resources, kept on `app.state.runtime`."""

    def __init__(self, name: str, settings: ServiceSettings, handlers: Mapping[str, Handler]):
        self.name = name
        self.settings = settings
        self.database = Database(settings.database_url, settings.db_pool_size)
        # Under load the consumer's deliveries that wait together commit together, and so do
        # the write routes' requests (shared/batching.py); the two apart, so that a request
        # never waits for a batch of messages to commit.
        batch_size = settings.consumer_batch_size
        self.requests = Transactions(self.database, name, batch_size, source="requests")
        self.consumer = Consumer(
            name,
            Transactions(self.database, name, batch_size),
            handlers,
            prefetch=settings.consumer_prefetch,
            retry_delays_ms=settings.retry_delays_ms,
            faults=Faults(settings.fault_crash_after_commit, settings.fault_fail_handler),
            declare_all=settings.declare_topology == "all",
            mode=settings.saga_mode,
            audit_segment_bytes=settings.audit_segment_bytes,
        )

        # The API serves (and the outbox fills) whether or not the broker is there.
        self.broker = BrokerLink(settings.amqp_url, name, self.consumer.start)

    async def ready(self) -> dict[str, str]:
        return await readiness(self.database, self.broker)


async def readiness(database: Database, broker: BrokerLink) -> dict[str, str]:
    """What /readyz reports for a process with a database and a broker link: "ok" or why not."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(database.ping(), timeout=2)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["broker"] = "ok" if broker.connected.is_set() else "unreachable"
    return checks


def check_handlers(name: str, mode: Mode, handlers: Mapping[str, Handler]) -> None:
    """Refuse to start a service whose handler table is not what the saga's definition
    (shared/definition.py, through shared/system.py) binds its work queue to in this mode:
    a message bound and not handled would be dead-lettered, a handler never bound never runs."""
    bound, handled = set(service_of(name).keys(mode)), set(handlers)
    problems = [
        *(f"{key} is bound to its queue and has no handler" for key in sorted(bound - handled)),
        *(f"{key} has a handler and is not bound" for key in sorted(handled - bound)),
    ]
    if problems:
        raise SystemExit(
            f"{name} refuses to start in {mode}: its handlers disagree with the saga's "
            f"definition (shared/definition.py): {'; '.join(problems)}"
        )


def all_ok(checks: dict[str, str]) -> bool:
    return all(value == "ok" for value in checks.values())


def build_app(
    name: str,
    settings: ServiceSettings,
    handlers: Mapping[str, Handler],
    router: APIRouter,
    background: Sequence[BackgroundTask] = (),
) -> FastAPI:
    log.setup(name, settings.log_level, settings.log_json, settings.log_trace_ids)
    check_handlers(name, settings.saga_mode, handlers)
    tracing.setup(name)
    runtime = Runtime(name, settings, handlers)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.database.open()
        tasks = [asyncio.create_task(runtime.broker.run(), name="broker")]
        tasks.append(asyncio.create_task(runtime.consumer.watch_dead_letters()))
        tasks += [asyncio.create_task(task(runtime.database)) for task in background]
        tasks.append(
            asyncio.create_task(
                run_pruning(
                    runtime.database,
                    PRUNE_INBOX,
                    settings.inbox_retention_seconds,
                    settings.prune_interval_seconds,
                )
            )
        )
        logger.info("%s service listening on %s:%d", name, settings.http_host, settings.http_port)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.database.close()
            tracing.shutdown()

    app = FastAPI(
        title=f"{name} service",
        lifespan=lifespan,
        telemetry=tracing.http_telemetry(),
        max_body_size=http.MAX_BODY_BYTES,
    )
    app.state.runtime = runtime
    app.include_router(router)
    app.include_router(operations_router())
    http.install(app)
    # SQLAlchemy's error on the read side, psycopg's own on the write path (shared/db.py).
    for unavailable in (OperationalError, psycopg.OperationalError, OSError, TimeoutError):
        app.add_exception_handler(unavailable, database_unavailable)
    return app


class Readiness(BaseModel):
    """/readyz: `ready`, and for each dependency "ok" or why not."""

    model_config = ConfigDict(extra="allow")

    ready: bool


_READINESS = {"model": Readiness, "description": "a dependency is unreachable"}
_METRICS = {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}


def operations_router() -> APIRouter:
    """/healthz, /readyz and /metrics, for any app whose `state.runtime` has `ready()`."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", response_model=Readiness, responses={503: _READINESS})
    async def readyz(request: Request) -> JSONResponse:
        checks = await request.app.state.runtime.ready()
        ready = all_ok(checks)
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=Response, responses={200: _METRICS})
    async def metrics(request: Request) -> Response:
        checks = await request.app.state.runtime.ready()
        READY.set(all_ok(checks))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # A lost or refused connection is an outage the client can retry; any other database
    # error is a bug and stays a 500 with its trace in the log.
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)


# Dependencies are `async def` although they never await: FastAPI runs a plain `def`
# dependency in a worker thread, which costs more than the whole dependency.
async def _database(request: Request) -> Database:
    runtime: Runtime = request.app.state.runtime
    return runtime.database


class Transact:
    """A write route's way to its unit of work: `await transact(work)` runs `work(uow)` in the
    request's trace, commits it (alone, or with the units of work that wait beside it, as the
    consumer's deliveries do: shared/batching.py) and returns what `work` returned. The work
    raises only what is meant to fail the transaction; a refusal that writes nothing (an
    unknown order, say) is better returned, so that a batch it shares is not sent alone."""

    def __init__(self, transactions: Transactions, parent: Context | None) -> None:
        self._transactions = transactions
        self._parent = parent

    async def __call__(self, work: Work[T]) -> T:
        result, _ = await self._transactions.run(work, self._parent)
        return result


async def _transact(request: Request) -> Transact:
    runtime: Runtime = request.app.state.runtime
    return Transact(runtime.requests, tracing.incoming(request.headers))


# Dependencies for the services' routes.
DatabaseDep = Annotated[Database, Depends(_database)]
TransactDep = Annotated[Transact, Depends(_transact)]
