"""Which failures are an outage (wait, attempt not spent) and which count as a failed attempt."""

import psycopg
import pytest
from aio_pika.exceptions import ProbableAuthenticationError
from pamqp.exceptions import AMQPInternalError
from sqlalchemy.exc import OperationalError

from shared.broker import problem
from shared.db import is_outage


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("connection refused"),  # no SQLSTATE: client-side
        psycopg.errors.AdminShutdown("terminating connection"),  # 57P01
        psycopg.errors.CannotConnectNow("the database system is starting up"),  # 57P03
        OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed")),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_an_unreachable_database_is_an_outage(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.errors.SerializationFailure("could not serialize"),  # 40001
        psycopg.errors.DeadlockDetected("deadlock"),  # 40P01
        psycopg.errors.CheckViolation("available >= 0"),
        ValueError("a bug"),
    ],
)
def test_a_failing_handler_is_not_an_outage(exc: BaseException) -> None:
    assert not is_outage(exc)


class _Close:
    reply_text = "NOT_ALLOWED - vhost saga-x not found"


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (ProbableAuthenticationError("ACCESS_REFUSED"), "refused our credentials"),
        (AMQPInternalError("one of ['Connection.OpenOk']", _Close()), "vhost saga-x not found"),
        (ConnectionRefusedError(111, "Connection refused"), "broker unreachable"),
    ],
)
def test_a_broker_problem_reads_as_what_it_is(exc: BaseException, said: str) -> None:
    assert said in problem(exc)
