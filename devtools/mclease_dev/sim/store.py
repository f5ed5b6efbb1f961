"""The global store over the simulated network: the memory backend, reached like a real one.

Each controller process opens a :class:`SimStorage` onto one shared :class:`MemoryStorage`. An
operation is a request on the simulated network; the store contract's error rules apply as a
networked backend applies them: no answer within ``operation_timeout`` is
:class:`StorageUnavailableError` for a read and :class:`OutcomeUnknownError` for a write (it may
have committed: the lost-answer fault makes sure some did), a store that is down refuses at once.
"""

from __future__ import annotations

from typing import Any

from mclease_core._errors import OutcomeUnknownError, StorageUnavailableError
from mclease_core._storage import Capabilities, LeaseData, LeaseObject, Storage
from mclease_core.backends.memory import MemoryStorage

from .network import Refused, Server, TimedOut, request
from .runtime import current_process

OPERATION_TIMEOUT = 2.0


class StoreServer(Server):
    def __init__(self, name: str, latency: float):
        super().__init__("store", latency)
        self.memory = MemoryStorage(name=name)
        self.memory_name = name
        self.writes: list[tuple[float, str, str, int]] = []
        """(true time, holder cluster, holder identity, version) of every committed write."""
        self.world: Any = None

    def committed(self, written: LeaseObject) -> LeaseObject:
        data = written.data
        self.writes.append(
            (self.world.now, data.holder_cluster, data.holder_identity, written.version)
        )
        return written

    def forget(self) -> None:
        MemoryStorage._stores.pop(self.memory_name, None)


class SimStorage(Storage):
    def __init__(self, server: StoreServer):
        self.server = server

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(operation_timeout=OPERATION_TIMEOUT)

    def _send(self, key: str, apply: Any, *, write: bool) -> Any:
        try:
            return request(
                current_process(), self.server, apply, timeout=OPERATION_TIMEOUT, write=write
            )
        except Refused as exc:
            raise StorageUnavailableError(str(exc), key=key, backend="sim") from None
        except TimedOut as exc:
            if write:
                raise OutcomeUnknownError(str(exc), key=key, backend="sim") from None
            raise StorageUnavailableError(str(exc), key=key, backend="sim") from None

    def read(self, key: str) -> LeaseObject:
        return self._send(key, lambda: self.server.memory.read(key), write=False)  # type: ignore[no-any-return]

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        memory = self.server.memory
        return self._send(  # type: ignore[no-any-return]
            key, lambda: self.server.committed(memory.create(key, data)), write=True
        )

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        return self._send(  # type: ignore[no-any-return]
            key,
            lambda: self.server.committed(self.server.memory.update(key, data, version=version)),
            write=True,
        )

    def delete(self, key: str, *, version: int) -> None:
        self._send(key, lambda: self.server.memory.delete(key, version=version), write=True)

    def close(self) -> None:
        pass
