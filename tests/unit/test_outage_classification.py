"""Which failures are an outage (wait, attempt not spent) and which count as a failed attempt."""

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from shared.consumer import is_outage


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
