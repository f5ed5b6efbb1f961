"""Plugin discovery and backend selection by URL scheme (in-process plugins)."""

from __future__ import annotations

import types

import pytest

from mclease_core import ConfigurationError, UnknownBackendError, load_backends, open_storage
from mclease_core.backends import MemoryStorage
from mclease_core.plugin import Backend, hookimpl, url_scheme


def plugin(name: str, *backends: Backend, error: Exception | None = None) -> types.SimpleNamespace:
    @hookimpl
    def mclease_backends() -> list[Backend]:
        if error is not None:
            raise error
        return list(backends)

    return types.SimpleNamespace(__name__=name, mclease_backends=mclease_backends)


def test_builtins_are_registered_through_the_hook() -> None:
    registry = load_backends(entry_points=False)
    assert registry.schemes() == ["memory", "sqlite"]
    assert {info.plugin for info in registry.backends()} == {"builtin"}
    assert registry.get("sqlite").distribution == "mclease-core"


def test_importing_the_package_loads_no_plugins() -> None:
    import mclease_core._plugins as plugins

    plugins._default_registry = None
    import mclease_core  # noqa: F401

    assert plugins._default_registry is None


def test_a_plugin_adds_a_scheme() -> None:
    extra = Backend("extra", lambda url: MemoryStorage("extra"), "test")
    registry = load_backends(entry_points=False, plugins=[plugin("extra-plugin", extra)])
    assert "extra" in registry.schemes()
    assert isinstance(registry.open("extra://anything"), MemoryStorage)


def test_a_failing_plugin_is_reported_and_the_others_still_work() -> None:
    good = plugin("good", Backend("good", lambda url: MemoryStorage("good")))
    bad = plugin("bad", error=RuntimeError("missing credentials library"))
    registry = load_backends(entry_points=False, plugins=[bad, good])
    assert "good" in registry.schemes()
    assert [str(f) for f in registry.failures] == [
        "plugin 'bad' from (registered in code) failed: RuntimeError: missing credentials library"
    ]


def test_a_plugin_returning_garbage_is_reported() -> None:
    registry = load_backends(entry_points=False, plugins=[plugin("odd", "not a backend")])  # type: ignore[arg-type]
    assert "not a Backend" in str(registry.failures[0])


def test_a_scheme_clash_keeps_the_builtin_and_reports_the_other() -> None:
    impostor = plugin("impostor", Backend("sqlite", lambda url: MemoryStorage("x")))
    registry = load_backends(entry_points=False, plugins=[impostor])
    assert registry.get("sqlite").plugin == "builtin"
    assert "already served by plugin 'builtin'" in str(registry.failures[0])


def test_unknown_scheme_names_installed_schemes() -> None:
    registry = load_backends(entry_points=False)
    with pytest.raises(UnknownBackendError) as info:
        registry.open("nosuch://x")
    assert "installed schemes: memory, sqlite" in str(info.value)
    assert info.value.installed == ["memory", "sqlite"]


@pytest.mark.parametrize(
    ("url", "distribution"),
    [
        ("gs://bucket/p", "mclease-gcs"),
        ("etcd://h:2379/p", "mclease-etcd"),
        ("rediss://h/0", "mclease-redis"),
    ],
)
def test_known_schemes_name_the_distribution_to_install(url: str, distribution: str) -> None:
    registry = load_backends(entry_points=False)
    with pytest.raises(UnknownBackendError, match=f"pip install {distribution}"):
        registry.open(url)


def test_open_storage_uses_the_installed_plugins() -> None:
    with pytest.raises(UnknownBackendError, match=r"installed schemes: .*memory.*sqlite"):
        open_storage("nosuch://x")
    assert isinstance(open_storage("memory://discovery"), MemoryStorage)


@pytest.mark.parametrize("url", ["", "just-a-path", "/var/lib/leases.db"])
def test_a_string_without_scheme_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="not a storage URL"):
        url_scheme(url)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/path.db",
        "sqlite://",
        "sqlite:///x.db?bogus=1",
        "sqlite:///x.db?timeout=soon",
        "memory://a?x=1",
    ],
)
def test_malformed_builtin_urls_are_rejected_with_the_expected_form(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"(expected|unknown|number)"):
        open_storage(url)
