"""A TCP fault proxy of the project's own, for the links from each process to PostgreSQL and to
RabbitMQ (toxiproxy's server is not to be had here).

Each `Link` listens on a port of its own and forwards every connection to one upstream. Until a
fault is set it only copies bytes; the faults are what a network and its middleboxes do:

- `delay(seconds)`: every chunk, both ways, is forwarded that much later (latency).
- `reset()`: every open connection is closed with an RST on both sides, mid-transaction or
  mid-publish; new connections pass.
- `black_hole()` until `heal()`: bytes are accepted and nothing comes back, on open connections
  and new ones; then what was held goes on, as after a partition that heals under TCP's
  retransmission, unless an end gave up meanwhile.
- `lose_commit(marker, reply_lost=True)`, on a PostgreSQL link: the next transaction on it that
  runs a statement containing `marker` has its COMMIT reach the server and the reply lost (the
  client sees its connection reset after the server committed); with `reply_lost=False` the
  connection is reset as the COMMIT goes out, so the server rolls the transaction back.

The proxy runs its own event loop in a thread: a test or a chaos run drives it from plain code.
"""

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from scripts.stack.instances import keep
from shared.system import component_of

if TYPE_CHECKING:
    from scripts.stack import StackConfig

T = TypeVar("T")

CHUNK = 65536
# What a PostgreSQL server sends when a COMMIT succeeded: CommandComplete, tag "COMMIT".
COMMITTED = b"C\x00\x00\x00\x0bCOMMIT\x00"
# The untyped requests a client may send before its startup message.
SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


class FaultProxy:
    """The links of one stack, served by one event loop in a thread of its own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy")
        self._thread.daemon = True
        self._thread.start()
        self.links: dict[str, Link] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def add(self, name: str, upstream_port: int, *, postgres: bool = False) -> "Link":
        """A new link to 127.0.0.1:upstream_port, listening on a free port of its own."""
        link = Link(self, name, upstream_port, postgres)
        self.run(link.listen())
        self.links[name] = link
        return link

    def heal(self) -> None:
        """Every fault off, on every link."""
        for link in self.links.values():
            link.heal()

    def close(self) -> None:
        self.run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        for link in self.links.values():
            await link.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class CommitFault:
    marker: bytes
    reply_lost: bool
    done: threading.Event = field(default_factory=threading.Event)


class Link:
    """One upstream, one listening port, the faults of every connection through it."""

    def __init__(self, proxy: FaultProxy, name: str, upstream_port: int, postgres: bool) -> None:
        self.name = name
        self.port = 0
        self._proxy = proxy
        self._upstream_port = upstream_port
        self._postgres = postgres
        self._server: asyncio.Server | None = None
        self._pipes: set[Pipe] = set()
        self._passing = asyncio.Event()
        self._passing.set()
        self.latency = 0.0
        self.commit_fault: CommitFault | None = None

    def via(self, url: str) -> str:
        """`url` (a database or broker URL on the upstream's port) through this link."""
        parts = urlsplit(url)
        host = parts.netloc.rpartition(":")[0] if parts.port else parts.netloc
        return urlunsplit(parts._replace(netloc=f"{host}:{self.port}"))

    # -- the faults, called from any thread -----------------------------------------------

    def delay(self, seconds: float) -> None:
        self.latency = seconds

    def black_hole(self) -> None:
        self._proxy.run(self._set_passing(False))

    def heal(self) -> None:
        self.latency = 0.0
        self.commit_fault = None
        self._proxy.run(self._set_passing(True))

    def reset(self) -> int:
        """Reset every open connection; return how many there were."""
        return self._proxy.run(self._reset())

    def lose_commit(self, marker: str, *, reply_lost: bool = True) -> CommitFault:
        """Arm the fault for the next transaction that runs a statement containing `marker`;
        its `done` is set once it struck."""
        assert self._postgres, "a COMMIT is PostgreSQL's: add the link with postgres=True"
        self.commit_fault = CommitFault(marker.encode(), reply_lost)
        return self.commit_fault

    # -- the loop's side ------------------------------------------------------------------

    async def _set_passing(self, passing: bool) -> None:
        if passing:
            self._passing.set()
        else:
            self._passing.clear()

    async def _reset(self) -> int:
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.abort()
        return len(pipes)

    async def listen(self) -> None:
        # The kernel may give port 0 a port that the stack has given a process to bind, and
        # let go of until the process does: such a port is given back, and another taken.
        while True:
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            if keep(port):
                self._server, self.port = server, port
                return
            server.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            abort(writer)  # the upstream is down: refuse, as it would
            return
        pipe = Pipe(writer, up_writer, Frontend() if self._postgres else None)
        self._pipes.add(pipe)
        try:
            await asyncio.gather(
                self._copy(reader, up_writer, pipe, to_server=True),
                self._copy(up_reader, writer, pipe, to_server=False),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pipes.discard(pipe)
            pipe.abort()

    async def _copy(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pipe: "Pipe",
        *,
        to_server: bool,
    ) -> None:
        """One direction: read as it comes, write each chunk `latency` later, hold while
        black-holed. The end of either direction ends the connection."""
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                at, data = await chunks.get()
                if not data:
                    return
                await self._passing.wait()
                if (wait := at + self.latency - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                data = self._inspect(pipe, data, to_server)
                if pipe.aborted:
                    return
                writer.write(data)
                await writer.drain()

        forwarding = asyncio.create_task(forward())
        try:
            while data := await reader.read(CHUNK):
                chunks.put_nowait((time.monotonic(), data))
            chunks.put_nowait((0.0, b""))
            await forwarding
        finally:
            forwarding.cancel()
        pipe.close()

    def _inspect(self, pipe: "Pipe", data: bytes, to_server: bool) -> bytes:
        """The lost-COMMIT fault: watch the client's statements, then its COMMIT, then the
        server's reply."""
        if pipe.frontend is None:
            return data
        if not to_server:
            if pipe.frontend.asked_for_tls and data[:1] == b"S":
                pipe.frontend = None  # TLS from here on: nothing to read, nothing to strike
            elif pipe.striking is not None and COMMITTED in data:
                self._strike(pipe)
            return data
        for kind, body in pipe.frontend.feed(data):
            fault = pipe.striking or self.commit_fault
            if fault is None:
                continue
            if pipe.striking is None and pipe.frontend.runs(kind, body, fault.marker):
                self.commit_fault, pipe.striking = None, fault  # this transaction takes it
            elif pipe.striking is not None and is_commit(kind, body) and not fault.reply_lost:
                self._strike(pipe)  # the COMMIT never reaches the server
        return data

    def _strike(self, pipe: "Pipe") -> None:
        assert pipe.striking is not None
        pipe.abort()
        pipe.striking.done.set()
        pipe.striking = None


class Pipe:
    """One client connection and its upstream."""

    def __init__(
        self,
        client: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
        frontend: "Frontend | None",
    ) -> None:
        self._writers = (client, upstream)
        self.frontend = frontend
        self.striking: CommitFault | None = None
        self.aborted = False

    def close(self) -> None:
        """An end hung up: hang up the other one too, with a FIN."""
        for writer in self._writers:
            writer.close()

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            for writer in self._writers:
                abort(writer)


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, not a FIN: linger zero."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Frontend:
    """Splits what a PostgreSQL client sends into messages, and remembers which prepared
    statements run a marked statement (psycopg prepares a query run five times)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self.asked_for_tls = False  # the last untyped request was SSLRequest
        self._statements: dict[bytes, bytes] = {}  # prepared name -> its query

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The complete messages so far, as (type byte, body); b"" types the untyped ones."""
        self._buffer += data
        while True:
            buffer = self._buffer
            if not self._started:
                if len(buffer) < 8 or len(buffer) < (length := int.from_bytes(buffer[:4])):
                    return
                code = int.from_bytes(buffer[4:8])
                self._started = code not in (SSL_REQUEST, GSSENC_REQUEST)
                self.asked_for_tls = code == SSL_REQUEST
                kind, body, self._buffer = b"", buffer[4:length], buffer[length:]
            else:
                if len(buffer) < 5 or len(buffer) < 1 + (length := int.from_bytes(buffer[1:5])):
                    return
                kind, body, self._buffer = buffer[:1], buffer[5 : 1 + length], buffer[1 + length :]
            if kind == b"P":  # Parse: statement name, query
                self._statements[cstring(body, 0)] = cstring(body, 1)
            yield kind, body

    def runs(self, kind: bytes, body: bytes, marker: bytes) -> bool:
        """Whether the message runs a statement containing `marker`."""
        if kind in (b"Q", b"P"):
            return marker in body
        if kind == b"B":  # Bind: portal name, statement name
            return marker in self._statements.get(cstring(body, 1), b"")
        return False


def cstring(body: bytes, index: int) -> bytes:
    """The index-th NUL-terminated string of a message, or b"" (a proxy never fails a
    connection for what it could not read)."""
    parts = body.split(b"\x00", index + 1)
    return parts[index] if len(parts) > index + 1 else b""


def is_commit(kind: bytes, body: bytes) -> bool:
    """A simple-protocol COMMIT, or one parsed in a pipeline."""
    if kind == b"Q":
        return body.rstrip(b"\x00").strip().upper() == b"COMMIT"
    if kind == b"P":
        return cstring(body, 1).strip().upper() == b"COMMIT"
    return False


def route_through(proxy: FaultProxy, config: "StackConfig", names: list[str]) -> None:
    """Give each named process links of its own to its database and to the broker (to each
    node of a cluster), in the stack's settings (`process_env`): `order→postgres`,
    `order-relay.2→rabbitmq`, `payment→rabbitmq-3`."""
    for name in names:
        service = component_of(name).name
        database = proxy.add(f"{name}→postgres", config.pg_port_of(service), postgres=True)
        nodes = config.amqp_node_ports
        brokers = [
            proxy.add(f"{name}→{broker_name(i, len(nodes))}", port)
            for i, port in enumerate(nodes, 1)
        ]
        config.process_env[name] = {
            "DATABASE_URL": database.via(config.database_url(service)),
            "AMQP_URL": config.amqp_url_of(service, [broker.port for broker in brokers]),
        }


def broker_name(index: int, nodes: int) -> str:
    """`rabbitmq`, or a cluster's `rabbitmq-1` to `rabbitmq-3`."""
    return "rabbitmq" if nodes == 1 else f"rabbitmq-{index}"
