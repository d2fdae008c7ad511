"""Logging for the person tailing three terminals: one line per meaningful step.

    12:00:01.234 payment   | order 3f2a9c1e | charged 5000 for OrderCreated -> PaymentSucceeded

JSON lines are a setting (LOG_JSON=true), not the default. So is the trace id of the saga a
line is about (LOG_TRACE_IDS; on by default in JSON lines only), for finding the saga's trace:

    12:00:01.234 payment   | order 3f2a9c1e | trace 4bf92f3577b34da6a3ce929d0e0e4736 | charged ...
"""

import json
import logging
import sys
from uuid import UUID

from shared.tracing import current_trace_id


class _Readable(logging.Formatter):
    def __init__(self, service: str, trace_ids: bool) -> None:
        super().__init__(datefmt="%H:%M:%S")
        self._service = service
        self._trace_ids = trace_ids

    def format(self, record: logging.LogRecord) -> str:
        order = getattr(record, "order_id", None)
        where = f"order {short(order)} | " if order else ""
        if self._trace_ids and (trace_id := current_trace_id()):
            where = f"{where}trace {trace_id} | "
        line = (
            f"{self.formatTime(record, self.datefmt)}.{int(record.msecs):03d} {self._service:<9} | "
            f"{where}{record.getMessage()}"
        )
        if record.levelno >= logging.WARNING:
            line = f"{line} [{record.levelname.lower()}]"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class _Json(logging.Formatter):
    def __init__(self, service: str, trace_ids: bool) -> None:
        super().__init__()
        self._service = service
        self._trace_ids = trace_ids

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "service": self._service,
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
        }
        if (order := getattr(record, "order_id", None)) is not None:
            entry["order_id"] = str(order)
        if self._trace_ids and (trace_id := current_trace_id()):
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def short(order_id: UUID | str) -> str:
    return str(order_id)[:8]


def setup(
    service: str, level: str = "INFO", as_json: bool = False, trace_ids: bool | None = None
) -> None:
    # No line shows the caller's file and line, its thread or its process: the standard
    # library's documented optimizations ("Optimization" in the logging HOWTO) skip looking
    # them up for every record, which was a tenth of a relay's CPU with its line per publish.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    with_ids = as_json if trace_ids is None else trace_ids
    handler.setFormatter(_Json(service, with_ids) if as_json else _Readable(service, with_ids))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The libraries' own chatter (reconnect attempts aside) is noise for this audience.
    for noisy in ("aiormq", "aio_pika", "uvicorn.access", "uvicorn.error", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def for_order(
    logger: logging.Logger, order_id: UUID | str
) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(logger, {"order_id": order_id})
