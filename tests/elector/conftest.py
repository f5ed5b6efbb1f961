from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from mclease_core import FakeClock, LeaderElector, LeaseTiming
from mclease_core.backends import MemoryStorage
from tests.support import FaultyStorage

TIMING = LeaseTiming(lease_duration=10.0, renew_deadline=6.0, retry_period=2.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> FaultyStorage:
    return FaultyStorage(MemoryStorage("elector-" + uuid.uuid4().hex[:8]), clock)


@pytest.fixture
def make_elector(clock: FakeClock, store: FaultyStorage) -> Callable[..., LeaderElector]:
    def make(identity: str, cluster: str = "east", **options: Any) -> LeaderElector:
        options.setdefault("timing", TIMING)
        return LeaderElector(store, "lease", identity, cluster=cluster, clock=clock, **options)

    return make
