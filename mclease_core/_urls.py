"""Storage URLs for backends: one parser (:class:`StorageURL`), credentials, redaction.

**One parser.** Every backend's ``from_url`` starts with :meth:`StorageURL.parse`, declaring the
schemes it serves, the shape of its host part (one host, several, none), its query options as
typed :class:`Option` values (durations through the same range check as every other duration),
which of them are handed through verbatim to the client library (:attr:`StorageURL.driver_options`)
and which only make sense over TLS. So every backend rejects an unknown option, a bad port or a
duration out of range with the same kind of :class:`ConfigurationError`, naming the URL (redacted)
and what is supported, and a backend's own checks use :meth:`StorageURL.error` for the same form.
A :class:`StorageURL` shows the URL only redacted, in ``str``, ``repr`` and every error.
(:func:`url_options` and :func:`seconds_option` are the older, lower-level pieces the built-in
``sqlite://`` backend still calls; they give the same messages.)

**Credentials.** A backend with a password takes it from exactly one of three places, so that it
need not sit in a ConfigMap or on a command line: the URL's user info (``redis://:pw@host``), the
option ``password_file=/path`` (a mounted Secret; the file's content without its trailing newline)
or the environment variable ``MCLEASE_STORAGE_PASSWORD`` (a ``secretKeyRef`` env entry). A user
name likewise comes from the URL, ``username_file=`` or ``MCLEASE_STORAGE_USERNAME``. Two sources
at once is a :class:`ConfigurationError` naming both, never a silent choice. :func:`credentials`
reads the files when the store is opened (a missing file fails right away) and
:meth:`Credentials.current` reads them again, for backends that re-authenticate (a rotated Secret
then takes effect without a restart).

**Redaction.** Every message, log line or repr that names a storage URL shows
:func:`redact` of it: the password in the user info and the values of options whose name ends in
``password``, ``token`` or ``secret`` become ``***``. A URL too malformed to parse safely (a
password with an unencoded ``/``, ``?`` or ``#`` splits differently than the user meant) loses
everything between the ``//`` and its last ``@`` instead: over-redacting is the safe mistake.
:func:`reject_stray_at` refuses such URLs before a backend quotes any piece of them (a port or
host that is really half a password), with the encoding hint. Texts we did not write (a client
library's exception) go through :meth:`Credentials.scrub`. Error messages never quote a
credential file's content, only its path.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

from ._errors import ConfigurationError
from ._limits import MAX_DURATION, MIN_DURATION, check_duration, excerpt

PASSWORD_ENV = "MCLEASE_STORAGE_PASSWORD"  # noqa: S105 - a variable name, not a password
USERNAME_ENV = "MCLEASE_STORAGE_USERNAME"
CREDENTIAL_OPTIONS = frozenset({"password_file", "username_file"})
"""The URL options :func:`credentials` reads; a backend adds them to the options it accepts."""

REDACTED = "***"
_SECRET_OPTION = re.compile(r"(?i)(password|token|secret)$")
_SECRET_OPTION_TEXT = re.compile(r"(?i)([?&;][^=&;#?]*(?:password|token|secret)=)[^&;#]*")
_AUTHORITY_START = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?/*")
_MAX_CREDENTIAL_FILE = 64 * 1024


def url_options(url: str, allowed: Iterable[str], *, backend: str) -> dict[str, str]:
    """The query options of ``url``; :class:`ConfigurationError` for any not in ``allowed``."""
    supported = sorted(allowed)
    options = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
    unknown = sorted(set(options) - set(supported))
    if unknown:
        raise ConfigurationError(
            f"unknown {backend} URL option(s) {unknown} in {redact(url)!r}; "
            f"supported: {', '.join(supported) or '(none)'}"
        )
    return options


def seconds_option(
    options: Mapping[str, str], name: str, default: float, *, url: str, backend: str
) -> float:
    """Option ``name`` as a positive number of seconds, or ``default`` when absent."""
    text = options.get(name)
    if text is None:
        return default
    try:
        return check_duration(f"{backend} {name}", float(text))
    except ValueError as exc:
        raise ConfigurationError(
            f"{backend} URL option {name} must be a number of seconds between {MIN_DURATION:g} "
            f"and {MAX_DURATION:g}, got {excerpt(repr(text))}"
        ) from exc


# ----- the URL object ----------------------------------------------------------------------------

_T = TypeVar("_T")
_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


@dataclasses.dataclass(frozen=True)
class Option(Generic[_T]):
    """One query option a backend accepts: its name, its default and how its text becomes a
    value. Build them with :meth:`seconds`, :meth:`text`, :meth:`flag` or :meth:`integer`.

    ``convert`` raises :class:`ValueError` whose text completes "option NAME ..."; ``driver``
    options are also handed through verbatim (:attr:`StorageURL.driver_options`); ``tls_only``
    options are refused on a scheme that is not a TLS one.
    """

    name: str
    default: _T
    convert: Callable[[str], _T]
    driver: bool = False
    tls_only: bool = False

    @staticmethod
    def seconds(name: str, default: float) -> Option[float]:
        """A duration in seconds, in the range every mclease duration shares."""
        return Option(name, default, _seconds)

    @staticmethod
    def text(
        name: str, default: str = "", *, driver: bool = False, tls_only: bool = False
    ) -> Option[str]:
        """Any text (a path, a name). ``default`` ``""`` reads as "not given"."""
        return Option(name, default, str, driver=driver, tls_only=tls_only)

    @staticmethod
    def flag(name: str, default: bool = False) -> Option[bool]:
        """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
        return Option(name, default, _flag)

    @staticmethod
    def integer(name: str, default: int, *, minimum: int, maximum: int) -> Option[int]:
        """A whole number in ``[minimum, maximum]``."""

        def convert(text: str) -> int:
            if not text.strip().lstrip("-").isdigit() or not minimum <= int(text) <= maximum:
                raise ValueError(f"must be a whole number from {minimum} to {maximum}")
            return int(text)

        return Option(name, default, convert)


def _seconds(text: str) -> float:
    try:
        return check_duration("duration", float(text))
    except ValueError:
        raise ValueError(
            f"must be a number of seconds between {MIN_DURATION:g} and {MAX_DURATION:g}"
        ) from None


def _flag(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("must be true or false")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One ``host[:port]`` of the URL's host part (IPv6 without its brackets)."""

    host: str
    port: int | None = None


HostShape = Literal["one", "several", "none"]


@dataclasses.dataclass(frozen=True, repr=False)
class StorageURL:
    """A storage URL parsed and validated for one backend; see :meth:`parse`.

    ``str()`` and ``repr()`` show the URL redacted; so does every error :meth:`error` builds.
    The password is only in :attr:`credentials` (whose repr hides it too).
    """

    scheme: str
    backend: str
    endpoints: tuple[Endpoint, ...]
    path: str
    """The path, percent-decoded, with its leading ``/`` (``""`` when there is none)."""
    credentials: Credentials
    usage: str = ""
    _text: str = ""
    _values: Mapping[str, object] = dataclasses.field(default_factory=dict)
    _given: frozenset[str] = frozenset()
    _driver: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        backend: str,
        schemes: Iterable[str],
        options: Iterable[Option[Any]] = (),
        hosts: HostShape = "one",
        default_port: int | None = None,
        takes_credentials: bool = True,
        tls_schemes: Iterable[str] = (),
        usage: str = "",
        environ: Mapping[str, str] | None = None,
    ) -> StorageURL:
        """Parse ``url``, or raise :class:`ConfigurationError` saying what is wrong with it.

        ``schemes``: the schemes this backend serves (one plugin may serve several, for example
        a plain and a TLS one, listed in ``tls_schemes``). ``options``: the query options it
        accepts; ``password_file=`` and ``username_file=`` are added when ``takes_credentials``,
        and the user name and password are resolved from their one source
        (:func:`credentials`, files read now). ``hosts``: ``"one"`` host, ``"several"``
        comma-separated ones, or ``"none"`` (a file path: ``sqlite:///path``). ``usage`` (for
        example ``"expected yours://host[:port]/prefix[?timeout=SECONDS]"``) ends every error
        about the URL's shape.
        """
        if not isinstance(url, str):
            raise ConfigurationError(f"a {backend} URL must be a str, got {type(url).__name__}")
        reject_stray_at(url, backend=backend)
        redacted = redact(url)
        hint = f"; {usage}" if usage else ""

        def invalid(problem: str) -> ConfigurationError:
            return ConfigurationError(f"invalid {backend} URL {redacted!r}: {problem}{hint}")

        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError as exc:  # its text quotes the netloc, password and all: never shown
            raise invalid(_unparsable(exc)) from None
        served = tuple(schemes)
        if parts.scheme.lower() not in served:
            raise invalid(f"the scheme must be {' or '.join(f'{name}://' for name in served)}")
        if parts.fragment:
            raise invalid("a URL fragment ('#...') is not allowed")
        _, at, host_part = parts.netloc.rpartition("@")
        if at and not takes_credentials:
            raise invalid(f"{parts.scheme}:// takes no user name or password")
        endpoints = _endpoints(host_part, hosts, default_port, invalid)
        declared = {option.name: option for option in options}
        if takes_credentials:
            declared.update({name: Option.text(name) for name in CREDENTIAL_OPTIONS})
        raw = _query(parts.query, redacted)
        unknown = sorted(set(raw) - set(declared))
        if unknown:
            raise ConfigurationError(
                f"unknown {backend} URL option(s) {unknown} in {redacted!r}; "
                f"supported: {', '.join(sorted(declared)) or '(none)'}"
            )
        tls = parts.scheme.lower() in set(tls_schemes)
        values: dict[str, object] = {}
        for name, option in declared.items():
            if name not in raw:
                values[name] = option.default
                continue
            if option.tls_only and not tls:
                secure = " or ".join(f"{scheme}://" for scheme in tls_schemes)
                raise ConfigurationError(
                    f"TLS options need the {secure} scheme: {name} in {redacted!r}"
                )
            try:
                values[name] = option.convert(raw[name])
            except ValueError as exc:
                shown = REDACTED if _SECRET_OPTION.search(name) else excerpt(repr(raw[name]))
                raise ConfigurationError(
                    f"{backend} URL option {name} {exc}, got {shown} in {redacted!r}"
                ) from None
        found = (
            credentials(parts, raw, backend=backend, environ=environ)
            if takes_credentials
            else Credentials(backend=backend)
        )
        return cls(
            scheme=parts.scheme.lower(),
            backend=backend,
            endpoints=endpoints,
            path=urllib.parse.unquote(parts.path),
            credentials=found,
            usage=usage,
            _text=url,
            _values=values,
            _given=frozenset(raw),
            _driver={name: raw[name] for name in raw if declared[name].driver},
        )

    def get(self, option: Option[_T]) -> _T:
        """The value of ``option`` (its default when the URL does not give it)."""
        if option.name not in self._values:
            raise KeyError(f"option {option.name!r} was not declared to StorageURL.parse")
        return cast("_T", self._values[option.name])

    def given(self, option: Option[Any]) -> bool:
        """Whether the URL gives ``option`` (rather than leaving it at its default)."""
        return option.name in self._given

    @property
    def driver_options(self) -> dict[str, str]:
        """The options declared ``driver=True`` that the URL gives, as text, for the client
        library."""
        return dict(self._driver)

    @property
    def host(self) -> str:
        """The first (for ``hosts="one"`` the only) host; ``""`` when there is none."""
        return self.endpoints[0].host if self.endpoints else ""

    @property
    def port(self) -> int | None:
        return self.endpoints[0].port if self.endpoints else None

    @property
    def redacted(self) -> str:
        return redact(self._text)

    def without_credentials(self) -> str:
        """The URL with no user info and only the driver options: for a client library that
        parses URLs itself, and must not see the password."""
        parts = urllib.parse.urlsplit(self._text)
        return urllib.parse.urlunsplit(
            parts._replace(
                netloc=parts.netloc.rpartition("@")[2],
                query=urllib.parse.urlencode(self._driver),
            )
        )

    def error(self, problem: str) -> ConfigurationError:
        """A :class:`ConfigurationError` about this URL, which it names redacted."""
        hint = f"; {self.usage}" if self.usage else ""
        return ConfigurationError(f"invalid {self.backend} URL {self.redacted!r}: {problem}{hint}")

    def scrub(self, text: str) -> str:
        """``text`` (a client library's message) with the password replaced."""
        return self.credentials.scrub(text)

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"StorageURL({self.redacted!r})"


def _query(query: str, redacted: str) -> dict[str, str]:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigurationError(f"URL option(s) {repeated} given twice in {redacted!r}")
    return dict(pairs)


def _endpoints(
    host_part: str,
    shape: HostShape,
    default_port: int | None,
    invalid: Callable[[str], ConfigurationError],
) -> tuple[Endpoint, ...]:
    if shape == "none":
        if host_part:
            raise invalid("this URL names a file: no host ('scheme:///absolute/path')")
        return ()
    if not host_part:
        raise invalid("a host is empty")
    items = host_part.split(",")
    if shape == "one" and len(items) > 1:
        raise invalid("one host only")
    endpoints = []
    for item in items:
        host, port = item, default_port
        if item.startswith("["):  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            if rest:
                port = _port(rest.removeprefix(":"), invalid)
        elif ":" in item:
            host, _, text = item.partition(":")
            port = _port(text, invalid)
        if not host:
            raise invalid("a host is empty")
        endpoints.append(Endpoint(host, port))
    return tuple(endpoints)


def _port(text: str, invalid: Callable[[str], ConfigurationError]) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise invalid("invalid port: a port is a number from 1 to 65535")
    return int(text)


def _unparsable(exc: ValueError) -> str:
    """What :func:`urllib.parse.urlsplit` refused, said without quoting any of the URL."""
    if "NFKC" in str(exc):
        return (
            "the user info or host holds a character that Unicode normalization turns into "
            "'/', '?', '#', '@' or ':' (a fullwidth one, say); percent-encode it"
        )
    if "IPv6" in str(exc):
        return "an IPv6 host must be complete and in brackets, as in [::1]:6379"
    return "it does not parse as a URL"


# ----- redaction ---------------------------------------------------------------------------------


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s'\"]*[@?][^\s'\"]*")


def redact_text(text: str) -> str:
    """``text`` (a message that may quote a URL someone typed: argparse's "unrecognized
    arguments", a bad environment variable) with :func:`redact` applied to every URL in it."""
    return _URL_IN_TEXT.sub(lambda match: redact(match.group(0)), text)


def redact(url: str) -> str:
    """``url`` with its password (and any ``...password=``, ``...token=``, ``...secret=`` option
    value, and a "port" that is not a number) replaced by ``***``; user, host, path and the other
    options kept verbatim.

    >>> redact("redis://alice:s3cret@redis.example:6379/0?prefix=a")
    'redis://alice:***@redis.example:6379/0?prefix=a'
    """
    text = str(url)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:  # an unbalanced "[" in the host, say
        parts = None
    netloc_at = text.find("//") + 2
    # urlsplit drops tabs and newlines: then its netloc is not in the text, redact the text as is
    if (
        parts is None
        or "@" in parts.path + parts.query + parts.fragment
        or text[netloc_at : netloc_at + len(parts.netloc)] != parts.netloc
    ):
        return _SECRET_OPTION_TEXT.sub(rf"\1{REDACTED}", _redact_up_to_last_at(text))
    netloc = _redact_netloc(parts.netloc)
    text = f"{text[:netloc_at]}{netloc}{text[netloc_at + len(parts.netloc) :]}"
    if parts.query:
        head, _, tail = text.partition("?")
        query, hash_mark, fragment = tail.partition("#")
        text = f"{head}?{_redact_query(query)}{hash_mark}{fragment}"
    return text


def reject_stray_at(url: str, *, backend: str) -> None:
    """:class:`ConfigurationError` for an ``@`` after the host: almost always a password with an
    unencoded ``/``, ``?`` or ``#``, which would otherwise be split into host, path and query
    and quoted in other errors."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return  # the backend's own parsing reports it
    if "@" in parts.path + parts.query + parts.fragment:
        raise ConfigurationError(
            f"invalid {backend} URL {redact(url)!r}: an '@' after the host; percent-encode "
            "'/', '?', '#' and '@' in a user name, password or option value (%2F, %3F, %23, "
            f"%40), or give the password with password_file=PATH or ${PASSWORD_ENV}"
        )


def _redact_netloc(netloc: str) -> str:
    """The password of the user info, and any "port" that is not a number (``redis://:pw``
    with the ``@host`` forgotten), replaced."""
    userinfo, at, hosts = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if colon and password:
        userinfo = f"{user}:{REDACTED}"
    items = []
    for item in hosts.split(","):
        host, colon, port = item.rpartition(":")
        if colon and port and not port.isdigit() and not item.endswith("]"):
            item = f"{host}:{REDACTED}"
        items.append(item)
    return f"{userinfo}{at}{','.join(items)}"


def _redact_query(query: str) -> str:
    """The query with the values of secret-looking options replaced, the rest kept verbatim."""
    pieces = []
    for piece in query.split("&"):
        name, equals, _ = piece.partition("=")
        if equals and _SECRET_OPTION.search(urllib.parse.unquote_plus(name)):
            piece = f"{name}={REDACTED}"
        pieces.append(piece)
    return "&".join(pieces)


def _redact_up_to_last_at(text: str) -> str:
    """For text that does not parse as the URL it was meant to be: everything between the
    authority's start and the last ``@`` may be a password."""
    at = text.rfind("@")
    if at < 0:
        return text
    start = _AUTHORITY_START.match(text)
    begin = start.end() if start else 0
    return text[:begin] + REDACTED + text[at:] if begin <= at else REDACTED + text[at:]


# ----- credentials -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Field:
    """One credential: its name in messages, its file option, its environment variable."""

    what: str
    option: str
    env: str


_USERNAME = _Field("user name", "username_file", USERNAME_ENV)
_PASSWORD = _Field("password", "password_file", PASSWORD_ENV)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A user name and password for a store, and the files they came from (if any).

    ``password_file`` and ``username_file`` are kept so that :meth:`current` can read them again
    when the backend re-authenticates. The password never appears in the repr.
    """

    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    username_file: str | None = None
    password_file: str | None = None
    backend: str = "storage"
    password_from: str = ""
    """Where the password came from, for messages: ``the URL's user info``,
    ``password_file=/path`` or ``$MCLEASE_STORAGE_PASSWORD`` (empty when there is none)."""

    def scrub(self, text: str) -> str:
        """``text`` (a client library's error message, say) with the password, also
        percent-encoded, replaced by ``***``: for messages we did not write ourselves."""
        if not self.password:
            return text
        for form in {self.password, urllib.parse.quote(self.password, safe="")}:
            text = text.replace(form, REDACTED)
        return text

    def current(self) -> Credentials:
        """These credentials with their files read again (a rotated Secret's new content)."""
        username, password = self.username, self.password
        if self.username_file is not None:
            username = _read_secret_file(self.username_file, _USERNAME, self.backend)
        if self.password_file is not None:
            password = _read_secret_file(self.password_file, _PASSWORD, self.backend)
        return dataclasses.replace(self, username=username, password=password)


def credentials(
    parts: urllib.parse.SplitResult,
    options: Mapping[str, str],
    *,
    backend: str,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """The user name and password of a store URL, each from at most one of: the URL's user
    info, the ``*_file`` option, the ``MCLEASE_STORAGE_*`` environment variable (empty counts
    as unset).

    ``parts`` is the URL split by :func:`urllib.parse.urlsplit`, ``options`` its query options
    and ``environ`` defaults to :data:`os.environ`. Raises :class:`ConfigurationError` when one
    is given twice or a file cannot be read.
    """
    reject_stray_at(parts.geturl(), backend=backend)
    env = os.environ if environ is None else environ
    url_user, _, url_password = parts.netloc.rpartition("@")[0].partition(":")
    username, username_file, _ = _one_source(
        _USERNAME, urllib.parse.unquote(url_user) or None, options, env, backend
    )
    password, password_file, password_from = _one_source(  # "redis://:@host" has none
        _PASSWORD, urllib.parse.unquote(url_password) or None, options, env, backend
    )
    return Credentials(username, password, username_file, password_file, backend, password_from)


def _one_source(
    field: _Field,
    in_url: str | None,
    options: Mapping[str, str],
    env: Mapping[str, str],
    backend: str,
) -> tuple[str | None, str | None, str]:
    """(value, the file it came from, where it came from) of the one source of ``field``."""
    file, in_env = options.get(field.option), env.get(field.env) or None
    given = [
        (f"the {field.option}= option", file is not None),
        ("the URL's user info", in_url is not None),
        (f"${field.env}", in_env is not None),
    ]
    sources = [source for source, present in given if present]
    if len(sources) > 1:
        raise ConfigurationError(
            f"the {backend} {field.what} is given twice, in {' and in '.join(sources)}; give it "
            f"in one place only: {field.option}=PATH for a mounted Secret, ${field.env} for an "
            "environment variable, or the URL"
        )
    if file is not None:
        return _read_secret_file(file, field, backend), file, f"{field.option}={file}"
    if in_url is not None:
        return in_url, None, "the URL's user info"
    return in_env, None, f"${field.env}" if in_env is not None else ""


def _read_secret_file(path: str, field: _Field, backend: str) -> str:
    """A credential file's content without its trailing newline. Errors name the path, never
    the content."""
    if not path:
        raise ConfigurationError(f"the {backend} URL option {field.option}= needs a path")
    try:
        with Path(path).open("rb") as file:
            raw = file.read(_MAX_CREDENTIAL_FILE + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(
            f"cannot read the {backend} {field.what} file {path!r} ({field.option}=): {reason}; "
            "mount the Secret there or fix the path"
        ) from exc
    if len(raw) > _MAX_CREDENTIAL_FILE:
        raise ConfigurationError(
            f"the {backend} {field.what} file {path!r} is larger than {_MAX_CREDENTIAL_FILE} "
            f"bytes; {field.option}= must name a file that holds only the {field.what}"
        )
    try:
        value = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:  # its .object is the file's content: do not chain it
        raise ConfigurationError(
            f"the {backend} {field.what} file {path!r} ({field.option}=) is not UTF-8 text"
        ) from None
    if not value:
        raise ConfigurationError(
            f"the {backend} {field.what} file {path!r} ({field.option}=) is empty"
        )
    return value
