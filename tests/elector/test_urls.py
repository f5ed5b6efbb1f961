"""Storage URL helpers of the core: :func:`redact`, :func:`credentials` and the messages that name
a URL. Pure logic: no servers, environment variables passed in, files in ``tmp_path``."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from mclease_core import ConfigurationError, UnknownBackendError, load_backends
from mclease_core._urls import (
    PASSWORD_ENV,
    USERNAME_ENV,
    Credentials,
    credentials,
    redact,
    reject_stray_at,
    url_options,
)
from mclease_core.backends import MemoryStorage, SQLiteStorage
from mclease_core.plugin import url_scheme
from mclease_dev.canaries import CANARY_PASSWORDS

PW, WRONG, AWKWARD = CANARY_PASSWORDS
AWKWARD_IN_URL = urllib.parse.quote(AWKWARD, safe="")


# ----- redact ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (f"redis://:{PW}@h:6379/0", "redis://:***@h:6379/0"),
        (f"rediss://alice:{PW}@h/0?prefix=a", "rediss://alice:***@h/0?prefix=a"),
        (f"etcd://root:{PW}@a:2379,b:2379/team", "etcd://root:***@a:2379,b:2379/team"),
        (f"redis://:{AWKWARD_IN_URL}@h/0", "redis://:***@h/0"),
        (f"REDIS://u:{PW}@[::1]:6379/0#x", "REDIS://u:***@[::1]:6379/0#x"),
        (
            f"redis://h/0?auth_token={PW}&client_secret={PW}&x=1",
            "redis://h/0?auth_token=***&client_secret=***&x=1",
        ),
        (f"redis://h/0?Password={PW}", "redis://h/0?Password=***"),
        (f"redis://:{PW}", "redis://:***"),  # the "@host" forgotten: a port that is no number
    ],
)
def test_redact_replaces_the_password_and_secret_options(url: str, redacted: str) -> None:
    assert redact(url) == redacted


@pytest.mark.parametrize(
    "url",
    [
        "redis://alice@h:6379/0?prefix=a&password_file=/etc/mclease/password",
        "sqlite:///var/lib/mclease/leases.db?prefix=team-a",
        "sqlite:relative.db",
        "memory://",
        "gs://bucket/prefix?timeout=5",
        "etcd://a:2379,[::1]:2380,[::1]/p",
        "redis://:@h/0",
        "not a url at all",
    ],
)
def test_redact_keeps_urls_without_secrets_verbatim(url: str) -> None:
    assert redact(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://:p/ss@h/0",  # unencoded "/", "?", "#", or whitespace in the password
        "redis://:p?ss@h/0",
        "redis://:p#ss@h/0",
        "redis://u:p\nss@h/0",
        "redis://[::1:pss@h/0",  # not even parseable
        ":pss@127.0.0.1:6379/0",  # no scheme
        "redis:/:pss@h/0",
    ],
)
def test_redact_hides_every_piece_of_a_password_urlsplit_would_misread(url: str) -> None:
    redacted = redact(url)
    assert "p" not in redacted.split("@")[0].removeprefix("redis"), redacted
    assert "ss" not in redacted
    assert redacted.endswith(url[url.rindex("@") :])


def test_redact_over_redacts_rather_than_guess_at_a_stray_at() -> None:
    assert redact("redis://h/0?client_name=a@b") == "redis://***@b"


# ----- messages that name a URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    "open_url",
    [
        lambda: url_scheme(f":{PW}@127.0.0.1:6379/0"),
        lambda: MemoryStorage.from_url(f"memory://u:{PW}@x?q=1"),
        lambda: SQLiteStorage.from_url(f"sqlite://u:{PW}@host/x.db"),
        lambda: url_options(f"redis://:{PW}@h/0?colour=blue", {"prefix"}, backend="redis"),
        lambda: reject_stray_at(f"redis://:{PW}/x@h/0", backend="redis"),
    ],
)
def test_core_messages_name_the_url_redacted(open_url: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_url()  # type: ignore[operator]
    assert PW not in str(info.value)
    assert "***" in str(info.value)


def test_an_unknown_scheme_names_the_scheme_only() -> None:
    with pytest.raises(UnknownBackendError) as info:
        load_backends(entry_points=False).open(f"nosuch://:{PW}@h/0")
    assert "'nosuch'" in str(info.value)
    assert PW not in str(info.value)


def test_a_stray_at_is_refused_with_the_encoding_hint() -> None:
    with pytest.raises(ConfigurationError, match=r"percent-encode.*%2F") as info:
        reject_stray_at("etcd://root:a/b@h/p", backend="etcd")
    assert "etcd://***@h/p" in str(info.value)
    reject_stray_at("etcd://root:a%2Fb@h/p", backend="etcd")


# ----- credentials -------------------------------------------------------------------------------


def _resolve(url: str, environ: dict[str, str] | None = None) -> Credentials:
    parts = urllib.parse.urlsplit(url)
    options = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return credentials(parts, options, backend="redis", environ=environ or {})


def _secret_file(directory: Path, content: str | bytes, name: str = "password") -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("url", ["redis://h/0", "redis://@h/0", "redis://:@h/0"])
def test_no_credentials(url: str) -> None:
    found = _resolve(url)
    assert (found.username, found.password, found.password_from) == (None, None, "")


def test_credentials_from_the_url_are_percent_decoded() -> None:
    found = _resolve(f"redis://al%40ice:{AWKWARD_IN_URL}@h/0")
    assert (found.username, found.password) == ("al@ice", AWKWARD)
    assert found.password_from == "the URL's user info"


def test_a_password_file_without_its_trailing_newline(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, f"{AWKWARD}\n")
    found = _resolve(f"redis://h/0?password_file={path}")
    assert found.password == AWKWARD
    assert (found.password_file, found.password_from) == (str(path), f"password_file={path}")


def test_a_username_file_and_a_crlf_file(tmp_path: Path) -> None:
    password = _secret_file(tmp_path, f"{PW}\r\n")
    user = _secret_file(tmp_path, "alice\n", "username")
    found = _resolve(f"redis://h/0?password_file={password}&username_file={user}")
    assert (found.username, found.password) == ("alice", PW)


def test_credentials_from_the_environment() -> None:
    found = _resolve("redis://h/0", {PASSWORD_ENV: PW, USERNAME_ENV: "alice"})
    assert (found.username, found.password) == ("alice", PW)
    assert found.password_from == f"${PASSWORD_ENV}"


def test_an_empty_environment_variable_counts_as_unset() -> None:
    found = _resolve(f"redis://:{PW}@h/0", {PASSWORD_ENV: ""})
    assert found.password == PW


def test_the_user_may_come_from_the_url_and_the_password_from_elsewhere() -> None:
    found = _resolve("redis://alice@h/0", {PASSWORD_ENV: PW})
    assert (found.username, found.password) == ("alice", PW)


def test_credentials_default_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PW)
    parts = urllib.parse.urlsplit("redis://h/0")
    assert credentials(parts, {}, backend="redis").password == PW


@pytest.mark.parametrize(
    ("url", "environ", "sources"),
    [
        (f"redis://:{PW}@h/0?password_file=/p", {}, "the password_file= option and in the URL's"),
        (f"redis://:{PW}@h/0", {PASSWORD_ENV: PW}, f"the URL's user info and in ${PASSWORD_ENV}"),
        ("redis://h/0?password_file=/p", {PASSWORD_ENV: PW}, f"option and in ${PASSWORD_ENV}"),
        ("redis://alice@h/0", {USERNAME_ENV: "bob"}, f"user info and in ${USERNAME_ENV}"),
    ],
)
def test_two_sources_are_refused_naming_both(
    url: str, environ: dict[str, str], sources: str
) -> None:
    with pytest.raises(ConfigurationError, match="given twice") as info:
        _resolve(url, environ)
    assert sources in str(info.value)
    assert "in one place only" in str(info.value)
    assert PW not in str(info.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "No such file or directory"),
        (lambda d: d, "Is a directory"),
        (lambda d: _secret_file(d, "\n"), "is empty"),
        (lambda d: _secret_file(d, b"\xff" + PW.encode()), "is not UTF-8"),
        (lambda d: _secret_file(d, PW * 5000), "larger than 65536 bytes"),
    ],
)
def test_an_unusable_password_file_is_one_line_naming_the_path(
    tmp_path: Path, make: object, message: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigurationError, match=message) as info:
        _resolve(f"redis://h/0?password_file={path}")
    text = str(info.value)
    assert repr(str(path)) in text
    assert "\n" not in text
    assert PW not in text


def test_an_empty_file_option_needs_a_path() -> None:
    with pytest.raises(ConfigurationError, match="password_file= needs a path"):
        _resolve("redis://h/0?password_file=")


def test_current_reads_a_rotated_file_again(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, PW)
    found = _resolve(f"redis://h/0?password_file={path}")
    path.write_text(WRONG)
    assert found.current().password == WRONG
    assert found.password == PW  # the original is unchanged
    path.unlink()
    with pytest.raises(ConfigurationError, match="cannot read"):
        found.current()


def test_the_password_is_not_in_the_repr() -> None:
    found = _resolve(f"redis://alice:{PW}@h/0")
    assert PW not in repr(found)
    assert "alice" in repr(found)


def test_scrub_removes_the_password_in_both_spellings() -> None:
    found = _resolve(f"redis://:{AWKWARD_IN_URL}@h/0")
    text = f"server said {AWKWARD} and {AWKWARD_IN_URL}"
    assert found.scrub(text) == "server said *** and ***"
    assert Credentials().scrub(text) == text
