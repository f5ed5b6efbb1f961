"""The backend author's kit (:mod:`mclease_core.plugin`): the URL object, ``map_errors``, the
shared error constructors and :class:`Deadline`. Pure logic: no servers; the clock is a fake."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from mclease_core import load_backends
from mclease_core.plugin import (
    ConfigurationError,
    Deadline,
    ErrorMap,
    LeaseConflictError,
    Option,
    OutcomeUnknownError,
    StorageError,
    StorageUnavailableError,
    StorageURL,
    conflict,
    map_errors,
    permission_denied,
    read_only,
)
from mclease_dev.canaries import CANARY_PASSWORDS

PW = CANARY_PASSWORDS[0]
TIMEOUT = Option.seconds("timeout", 5.0)
PREFIX = Option.text("prefix", "mclease")
ANONYMOUS = Option.flag("anonymous")
DB = Option.integer("db", 0, minimum=0, maximum=15)
CA = Option.text("ssl_ca", driver=True, tls_only=True)
NAME = Option.text("client_name", driver=True)
OPTIONS: tuple[Option[Any], ...] = (TIMEOUT, PREFIX, ANONYMOUS, DB, CA, NAME)


def parse(url: str, **kwargs: Any) -> StorageURL:
    settings: dict[str, Any] = {
        "backend": "yours",
        "schemes": ("yours", "yourss"),
        "options": OPTIONS,
        "tls_schemes": ("yourss",),
        "usage": "expected yours://host[:port]/prefix",
        "environ": {},
    }
    settings.update(kwargs)
    return StorageURL.parse(url, **settings)


# ----- the URL object ----------------------------------------------------------------------------


def test_a_url_is_parsed_into_typed_options_hosts_and_credentials() -> None:
    url = parse(f"yourss://al%40ice:{PW}@h:7/team/a?timeout=2.5&anonymous=true&db=3&ssl_ca=/c")
    assert (url.scheme, url.host, url.port, url.path) == ("yourss", "h", 7, "/team/a")
    assert (url.get(TIMEOUT), url.get(ANONYMOUS), url.get(DB), url.get(PREFIX)) == (
        2.5,
        True,
        3,
        "mclease",
    )
    assert url.given(TIMEOUT)
    assert not url.given(PREFIX)
    assert (url.credentials.username, url.credentials.password) == ("al@ice", PW)


def test_the_password_is_masked_in_str_repr_and_errors() -> None:
    url = parse(f"yours://u:{PW}@h/p?timeout=1")
    for text in (str(url), repr(url), str(url.error("bad")), repr(url.credentials)):
        assert PW not in text
    assert str(url) == "yours://u:***@h/p?timeout=1"
    assert "***" in str(url.error("bad"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"yours://:{PW}@h/p?colour=blue", "unknown yours URL option"),
        (f"yours://:{PW}@h/p?timeout=soon", "number of seconds between 0.05 and 3600"),
        (f"yours://:{PW}@h/p?timeout=1e308", "between 0.05 and 3600"),
        (f"yours://:{PW}@h/p?anonymous=maybe", "must be true or false"),
        (f"yours://:{PW}@h/p?db=16", "whole number from 0 to 15"),
        (f"yours://:{PW}@h/p?ssl_ca=/c", "TLS options need the yourss://"),
        (f"yours://:{PW}@h/p?timeout=1&timeout=2", "given twice"),
        (f"yours://:{PW}@h:http/p", "invalid port"),
        (f"yours://:{PW}@h:0/p", "invalid port"),
        (f"yours://:{PW}@/p", "a host is empty; expected yours://"),
        (f"yours://:{PW}@a,b/p", "one host only"),
        (f"other://:{PW}@h/p", "the scheme must be yours:// or yourss://"),
        (f"yours://:{PW}@h/p#frag", "fragment"),
        ("yours://:p/ss@h/p", "percent-encode"),
        # urlsplit's own error quotes the netloc: a password of fullwidth characters leaked
        (f"yours://user:{PW}\uff0f x@h/p", "Unicode normalization"),
        (f"yours://user:{PW}@[::1/p", "IPv6 host must be complete"),
    ],
)
def test_bad_urls_name_the_problem_never_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        parse(url)
    assert PW not in str(info.value)
    assert "p/ss" not in str(info.value)


def test_a_secret_option_value_is_masked_in_its_error() -> None:
    token = Option.integer("auth_token", 0, minimum=0, maximum=1)
    with pytest.raises(ConfigurationError, match=r"got \*\*\*") as info:
        parse(f"yours://h/p?auth_token={PW}", options=(token,))
    assert PW not in str(info.value)


def test_driver_options_pass_through_and_the_client_url_has_no_credentials() -> None:
    url = parse(f"yourss://u:{PW}@h:7/3?timeout=2&ssl_ca=/c&client_name=me")
    assert url.driver_options == {"ssl_ca": "/c", "client_name": "me"}
    client_url = url.without_credentials()
    assert PW not in client_url
    assert "u@" not in client_url
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(client_url).query) == {
        "ssl_ca": ["/c"],
        "client_name": ["me"],
    }


def test_several_hosts_with_default_ports_and_ipv6() -> None:
    url = parse("yours://a,b:2,[::1]:3/p", hosts="several", default_port=9)
    assert [(end.host, end.port) for end in url.endpoints] == [("a", 9), ("b", 2), ("::1", 3)]


def test_a_file_url_has_no_host_and_a_url_without_credentials_refuses_them() -> None:
    assert parse("yours:///var/x.json", hosts="none").path == "/var/x.json"
    with pytest.raises(ConfigurationError, match="no host"):
        parse("yours://h/x.json", hosts="none")
    with pytest.raises(ConfigurationError, match="takes no user name or password") as info:
        parse(f"yours://u:{PW}@h/p", takes_credentials=False)
    assert PW not in str(info.value)


def test_credentials_come_from_one_source(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    url = parse(f"yours://h/p?password_file={secret}")
    assert url.credentials.password == "from-file"
    assert parse("yours://h/p", environ={"MCLEASE_STORAGE_PASSWORD": "env"}).credentials.password
    with pytest.raises(ConfigurationError, match="given twice"):
        parse(f"yours://:{PW}@h/p?password_file={secret}")
    with pytest.raises(ConfigurationError, match="unknown yours URL option"):
        parse(f"yours://h/p?password_file={secret}", takes_credentials=False)


def test_an_undeclared_option_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="not declared"):
        parse("yours://h/p").get(Option.text("elsewhere"))


# ----- map_errors and the constructors -----------------------------------------------------------


class NativeTimeout(Exception):
    pass


class NativeReset(NativeTimeout):
    pass


def test_map_errors_uses_the_first_matching_entry_and_chains() -> None:
    mapping: ErrorMap = {
        NativeReset: lambda exc: OutcomeUnknownError(f"lost: {exc}", key="k", backend="yours"),
        NativeTimeout: StorageUnavailableError,
    }
    with (
        pytest.raises(OutcomeUnknownError, match="lost: reset") as info,
        map_errors(mapping, key="k", backend="yours"),
    ):
        raise NativeReset("reset")
    assert isinstance(info.value.__cause__, NativeReset)
    with (
        pytest.raises(StorageUnavailableError) as unavailable,
        map_errors(mapping, key="k", backend="yours", context="yours at h"),
    ):
        raise NativeTimeout(f"slow, said {PW}")
    assert str(unavailable.value).startswith("yours at h: NativeTimeout: slow")
    assert (unavailable.value.key, unavailable.value.backend) == ("k", "yours")
    assert isinstance(unavailable.value.__cause__, NativeTimeout)


def test_map_errors_scrubs_passes_mclease_errors_and_leaves_unmapped_ones() -> None:
    with (
        pytest.raises(StorageUnavailableError) as info,
        map_errors(
            {NativeTimeout: StorageUnavailableError},
            key=None,
            backend="yours",
            scrub=lambda text: text.replace(PW, "***"),
        ),
    ):
        raise NativeTimeout(f"auth {PW} failed")
    assert PW not in str(info.value)
    already = LeaseConflictError("mine", key="k")
    with (
        pytest.raises(LeaseConflictError) as passed,
        map_errors({Exception: StorageError}, key="k", backend="yours"),
    ):
        raise already
    assert passed.value is already
    with (
        pytest.raises(KeyError),
        map_errors({NativeTimeout: StorageError}, key="k", backend="yours"),
    ):
        raise KeyError("not mapped")


def test_a_wrapped_error_keeps_its_own_cause() -> None:
    def unreadable() -> ConfigurationError:
        try:
            raise FileNotFoundError("/secret")
        except FileNotFoundError as exc:
            error = ConfigurationError("cannot read the password file")
            error.__cause__ = exc
            return error

    with (
        pytest.raises(ConfigurationError) as info,
        map_errors({NativeTimeout: lambda exc: unreadable()}, key=None, backend="yours"),
    ):
        raise NativeTimeout("wrapper")
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_the_constructors_speak_one_vocabulary() -> None:
    assert "stored version is 7" in str(conflict("k", "yours", expected=3, stored=7))
    assert "does not exist" in str(conflict("k", "yours", expected=3, missing=True))
    assert "another version or does not exist" in str(conflict("k", "yours", expected=3))
    assert isinstance(permission_denied("refused"), ConfigurationError)
    replica = read_only("READONLY", key="k", backend="yours")
    assert isinstance(replica, StorageUnavailableError)
    assert replica.retryable


# ----- Deadline ----------------------------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_deadline_gives_each_step_what_is_left() -> None:
    clock = FakeMonotonic()
    deadline = Deadline(5.0, key="k", backend="yours", clock=clock)
    assert deadline.remaining() == 5.0
    assert deadline.remaining(cap=2.0) == 2.0
    clock.now += 4.0
    assert deadline.remaining(cap=2.0) == pytest.approx(1.0)
    clock.now += 1.0
    assert deadline.expired()
    assert deadline.left() == 0.0


def test_an_expired_read_or_unsent_write_is_unavailable() -> None:
    clock = FakeMonotonic()
    for write in (False, True):
        deadline = Deadline(1.0, key="k", backend="yours", write=write, clock=clock)
        deadline.sent() if not write else None  # a read marked sent stays a read
        clock.now += 1.0
        with pytest.raises(StorageUnavailableError, match="did not answer within 1s"):
            deadline.remaining()


def test_an_expired_sent_write_is_outcome_unknown() -> None:
    clock = FakeMonotonic()
    deadline = Deadline(1.0, key="k", backend="yours", write=True, what="yours at h", clock=clock)
    deadline.sent()
    clock.now += 2.0
    with pytest.raises(OutcomeUnknownError, match=r"yours at h did not answer a write.*re-read"):
        deadline.remaining()
    assert "last error: reset" in str(deadline.exceeded("reset"))


# ----- one parser in every plugin ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PW}@h/0?colour=blue",
        f"rediss://:{PW}@h/0?colour=blue",
        f"etcd://root:{PW}@h/x?colour=blue",
        f"etcds://root:{PW}@h/x?colour=blue",
        "gs://bucket/p?colour=blue",
    ],
)
def test_every_plugin_parses_its_url_with_the_one_parser(url: str) -> None:
    """The same unknown option gives the same error, password masked, whatever the plugin."""
    with pytest.raises(
        ConfigurationError, match=r"unknown \w+ URL option\(s\) \['colour'\]"
    ) as info:
        load_backends().open(url)
    assert PW not in str(info.value)


@pytest.mark.parametrize(
    "url", [f"redis://:{PW}@h/0?timeout=0", f"etcd://u:{PW}@h/x?timeout=0", "gs://bkt/p?timeout=0"]
)
def test_every_plugin_checks_durations_alike(url: str) -> None:
    with pytest.raises(
        ConfigurationError, match="timeout must be a number of seconds between"
    ) as info:
        load_backends().open(url)
    assert PW not in str(info.value)
