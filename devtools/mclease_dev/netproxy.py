"""A TCP proxy on 127.0.0.1 in front of a real server, to misbehave the way networks do.

For tests that need the network between a client and a real API server to trickle its answers
(a server or proxy that sends a byte at a time), or to go silent without closing anything (a
load balancer or NAT that dropped the connection): things no real server does on demand. The
bytes are the server's own (TLS passes through untouched); only their timing changes.

``mode`` is read for every chunk, so a test can switch it while connections are open:
``"pass"`` forwards at once, ``"trickle"`` forwards the server's answers one byte per
``trickle_delay`` seconds, ``"blackhole"`` forwards nothing in either direction and keeps every
socket open.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from mclease_core._closing import Closing


class TcpProxy(Closing):
    def __init__(self, target_host: str, target_port: int, *, trickle_delay: float = 0.05):
        self.target = (target_host, target_port)
        self.trickle_delay = trickle_delay
        self.mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        self._thread.join(2)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, sink, answers in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, answers), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        source.settimeout(0.2)
        try:
            while not self._closed.is_set():
                try:
                    chunk = source.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                self._forward(chunk, sink, answers)
        except OSError:
            pass
        finally:
            if self.mode != "blackhole":
                for sock in (source, sink):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def _forward(self, chunk: bytes, sink: socket.socket, answers: bool) -> None:
        while self.mode == "blackhole" and not self._closed.is_set():
            time.sleep(0.05)
        if answers and self.mode == "trickle":
            for index in range(len(chunk)):
                sink.sendall(chunk[index : index + 1])
                time.sleep(self.trickle_delay)
            return
        sink.sendall(chunk)
