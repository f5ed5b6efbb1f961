"""The jsonfile backend passes mclease's conformance suite: all a third party writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mclease_core import Storage, open_storage
from mclease_core.conformance import StorageConformance, StorageHarness
from mclease_jsonfile import JsonFileStorage


class JsonFileHarness(StorageHarness):
    unavailable_within = 2.0

    def __init__(self, directory: Path) -> None:
        self.path = directory / "store.json"

    def open(self, namespace: str) -> Storage:
        return open_storage(self.url(namespace))

    def url(self, namespace: str) -> str:
        return f"jsonfile://{self.path}?prefix={namespace}"

    def open_unreachable(self) -> Storage:
        return JsonFileStorage(self.path.parent / "missing-directory" / "store.json")

    def corrupt(self, namespace: str, key: str) -> None:
        JsonFileStorage(self.path, namespace).corrupt(key)


class TestJsonFileBackend(StorageConformance):
    @pytest.fixture
    def storage_harness(self, tmp_path: Path) -> StorageHarness:
        return JsonFileHarness(tmp_path)
