"""The core's fault helpers on their own: :class:`FaultProxy` in front of a loopback echo
server, and :func:`call_within`'s deadline."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from mclease_core.testing import LOOPBACK, FaultProxy, call_within


@pytest.fixture
def echo_server() -> Iterator[tuple[socket.socket, list[bytes]]]:
    """A server that answers every chunk with ``ok:<chunk>``; ``received`` lists the chunks."""
    listener = socket.create_server((LOOPBACK, 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    def answer(connection: socket.socket) -> None:
        with connection:
            while chunk := connection.recv(4096):
                received.append(chunk)
                connection.sendall(b"ok:" + chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener, received
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
    listener.close()
    thread.join(5)
    assert not thread.is_alive()


def _exchange(sock: socket.socket, chunk: bytes) -> bytes:
    sock.sendall(chunk)
    return sock.recv(4096)


def test_bytes_pass_through_until_an_answer_is_lost(
    echo_server: tuple[socket.socket, list[bytes]],
) -> None:
    listener, received = echo_server
    with FaultProxy(LOOPBACK, listener.getsockname()[1], quiet=0.05) as proxy:
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
            assert _exchange(client, b"first") == b"ok:first"
            proxy.lose_next_answer()
            assert _exchange(client, b"write") == b"", "the answer was not lost"
        assert received == [b"first", b"write"], "the request did not reach the server"
        assert proxy.answers_lost == 1
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
            assert _exchange(client, b"again") == b"ok:again"


def test_matching_picks_the_request_whose_answer_is_lost(
    echo_server: tuple[socket.socket, list[bytes]],
) -> None:
    listener, _ = echo_server
    with FaultProxy(LOOPBACK, listener.getsockname()[1], quiet=0.05) as proxy:
        proxy.lose_next_answer(lambda chunk: chunk.startswith(b"PUT"))
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
            assert _exchange(client, b"GET x") == b"ok:GET x"
            assert _exchange(client, b"PUT x") == b""


def test_close_stops_the_thread_and_closes_every_socket(
    echo_server: tuple[socket.socket, list[bytes]],
) -> None:
    listener, _ = echo_server
    proxy = FaultProxy(LOOPBACK, listener.getsockname()[1])
    client = socket.create_connection((proxy.host, proxy.port), timeout=5)
    assert _exchange(client, b"hello") == b"ok:hello"
    proxy.close()
    assert not proxy._thread.is_alive()
    assert client.recv(4096) == b"", "the proxied connection stayed open"
    client.close()
    with pytest.raises(OSError):
        socket.create_connection((proxy.host, proxy.port), timeout=1).close()


def test_a_server_that_is_down_closes_the_client_connection() -> None:
    unused = socket.create_server((LOOPBACK, 0))
    port = unused.getsockname()[1]
    unused.close()
    with (
        FaultProxy(LOOPBACK, port) as proxy,
        socket.create_connection((proxy.host, proxy.port), timeout=5) as client,
    ):
        assert client.recv(4096) == b""


def test_call_within_reports_a_call_still_running_at_its_deadline() -> None:
    release = threading.Event()
    result = call_within(0.05, lambda: release.wait(30), name="blocked")
    release.set()
    assert not result.finished
    assert "still running" in result.describe()


def test_call_within_hands_back_the_value_or_the_exception() -> None:
    assert call_within(5, lambda: 42).value == 42
    failed = call_within(5, lambda: int("x"))
    assert failed.finished
    assert isinstance(failed.error, ValueError)
