"""The fault proxy itself (scripts/chaos/proxy.py): bytes through untouched, a reset is an
RST, and its reading of what a PostgreSQL client sends."""

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from scripts.chaos.proxy import SSL_REQUEST, FaultProxy, Frontend, cstring, is_commit


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = server.accept()
        with conn, contextlib.suppress(ConnectionResetError):  # the proxy resets it
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_bytes_pass_both_ways_untouched_and_a_reset_is_an_rst(echo_port: int) -> None:
    proxy = FaultProxy()
    try:
        link = proxy.add("echo", echo_port)
        payload = bytes(range(256)) * 4096
        with socket.create_connection(("127.0.0.1", link.port), timeout=10) as client:
            client.sendall(payload)
            received = b""
            while len(received) < len(payload):
                received += client.recv(65536)
            assert received == payload
            assert link.reset() == 1
            with pytest.raises(ConnectionResetError):
                client.recv(1)
    finally:
        proxy.close()


def test_a_black_hole_holds_the_bytes_until_healed(echo_port: int) -> None:
    proxy = FaultProxy()
    try:
        link = proxy.add("echo", echo_port)
        with socket.create_connection(("127.0.0.1", link.port), timeout=10) as client:
            link.black_hole()
            client.sendall(b"held")
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):
                client.recv(4)
            link.heal()
            client.settimeout(10)
            assert client.recv(4) == b"held"
    finally:
        proxy.close()


def message(kind: bytes, body: bytes) -> bytes:
    return kind + (4 + len(body)).to_bytes(4) + body


def test_the_frontend_splits_messages_across_chunks_and_follows_prepared_statements() -> None:
    ssl_request = (8).to_bytes(4) + SSL_REQUEST.to_bytes(4)
    startup = (9).to_bytes(4) + (196608).to_bytes(4) + b"\x00"
    stream = (
        ssl_request
        + startup
        + message(b"P", b"_pg3_0\x00INSERT INTO inbox VALUES ($1)\x00\x00\x00")
        + message(b"B", b"\x00_pg3_0\x00\x00\x00")
        + message(b"B", b"\x00_pg3_1\x00\x00\x00")
        + message(b"Q", b"COMMIT\x00")
    )
    frontend = Frontend()
    # One byte at a time: every message is found whole whatever the chunks.
    messages = [m for i in range(len(stream)) for m in frontend.feed(stream[i : i + 1])]
    assert [kind for kind, _ in messages] == [b"", b"", b"P", b"B", b"B", b"Q"]
    marker = b"INSERT INTO inbox"
    assert [frontend.runs(kind, body, marker) for kind, body in messages] == [
        False, False, True, True, False, False,
    ]  # fmt: skip
    assert [is_commit(kind, body) for kind, body in messages] == [False] * 5 + [True]
    assert is_commit(b"P", b"\x00COMMIT\x00\x00\x00")
    assert not is_commit(b"Q", b"COMMIT PREPARED 'x'\x00")


def test_what_the_frontend_cannot_read_is_passed_over_not_failed() -> None:
    frontend = Frontend()
    started = (8).to_bytes(4) + (196608).to_bytes(4)
    messages = list(frontend.feed(started + message(b"P", b"no nul") + message(b"B", b"")))
    assert [kind for kind, _ in messages] == [b"", b"P", b"B"]
    assert not frontend.runs(b"B", b"", b"x")
    assert not is_commit(b"P", b"no nul")
    assert cstring(b"a\x00b\x00", 1) == b"b"
    assert cstring(b"a\x00b", 1) == b""
    assert not frontend.asked_for_tls
    asking = Frontend()
    assert [kind for kind, _ in asking.feed((8).to_bytes(4) + SSL_REQUEST.to_bytes(4))] == [b""]
    assert asking.asked_for_tls  # a server's "S" then means TLS: the proxy stops reading
