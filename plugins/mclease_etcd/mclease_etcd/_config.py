"""Parsing ``etcd://`` and ``etcds://`` URLs into an :class:`EtcdConfig`, with clear errors.

The user and password come from the core's :func:`mclease_core._urls.credentials`: each from
exactly one of the URL's user info, ``username_file=``/``password_file=`` (a mounted Secret) or
``$MCLEASE_STORAGE_USERNAME``/``$MCLEASE_STORAGE_PASSWORD``; etcd needs both or neither. Every
message names the URL through :func:`redact`.

Not here: connecting (``_storage`` connects lazily, on the first operation).
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import Path

import grpc

from mclease_core import (
    CREDENTIAL_OPTIONS,
    PASSWORD_ENV,
    USERNAME_ENV,
    ConfigurationError,
    Credentials,
    credentials,
    redact,
    reject_stray_at,
    seconds_option,
    url_options,
)

DEFAULT_PORT = 2379
DEFAULT_PREFIX = "mclease"
DEFAULT_TIMEOUT = 5.0
_TLS_FILES = ("ca_cert", "cert_cert", "cert_key")
_OPTIONS = {"timeout", *_TLS_FILES, *CREDENTIAL_OPTIONS}
_USAGE = (
    "expected etcd://[user@]host[:port][,host2[:port]...][/prefix][?timeout=SECONDS"
    "&password_file=PATH&username_file=PATH] (or $MCLEASE_STORAGE_USERNAME and "
    "$MCLEASE_STORAGE_PASSWORD, or etcd://user:password@...) or etcds://... with optional "
    "ca_cert=PATH, cert_cert=PATH&cert_key=PATH"
)


@dataclasses.dataclass(frozen=True)
class EtcdConfig:
    """Where the etcd cluster is and how to talk to it."""

    endpoints: tuple[tuple[str, int], ...]
    prefix: str = DEFAULT_PREFIX
    timeout: float = DEFAULT_TIMEOUT
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    credentials: Credentials | None = dataclasses.field(default=None, repr=False, compare=False)
    """Where ``user`` and ``password`` came from: read again (files) at each authentication."""
    tls: bool = False
    ca_cert: str | None = None
    cert_cert: str | None = None
    cert_key: str | None = None

    @property
    def scheme(self) -> str:
        return "etcds" if self.tls else "etcd"

    @property
    def where(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.endpoints)

    @classmethod
    def from_url(cls, url: str) -> EtcdConfig:
        reject_stray_at(url, backend="etcd")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("etcd", "etcds") or not parts.netloc or parts.fragment:
            raise ConfigurationError(f"invalid etcd URL {redact(url)!r}: {_USAGE}")
        hosts = parts.netloc.rpartition("@")[2]
        options = url_options(url, _OPTIONS, backend="etcd")
        found = _both_or_neither(credentials(parts, options, backend="etcd"))
        tls = parts.scheme == "etcds"
        if not tls and any(name in options for name in _TLS_FILES):
            raise ConfigurationError(f"TLS options need the etcds:// scheme in {redact(url)!r}")
        if ("cert_cert" in options) != ("cert_key" in options):
            raise ConfigurationError(f"cert_cert and cert_key go together in {redact(url)!r}")
        path = urllib.parse.unquote(parts.path).strip("/")
        return cls(
            endpoints=tuple(_endpoint(url, item) for item in hosts.split(",")),
            prefix=path or DEFAULT_PREFIX,
            timeout=seconds_option(options, "timeout", DEFAULT_TIMEOUT, url=url, backend="etcd"),
            user=found.username,
            password=found.password,
            credentials=found if found.password is not None else None,
            tls=tls,
            **{name: options[name] for name in _TLS_FILES if name in options},
        )

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials for the channel (system roots unless ``ca_cert``), or ``None``."""
        if not self.tls:
            return None
        root, key, chain = (_read(path) for path in (self.ca_cert, self.cert_key, self.cert_cert))
        return grpc.ssl_channel_credentials(
            root_certificates=root, private_key=key, certificate_chain=chain
        )


def _both_or_neither(found: Credentials) -> Credentials:
    if (found.username is None) == (found.password is None):
        return found
    missing, how = (
        ("password", f"password_file=PATH, ${PASSWORD_ENV} or etcd://user:password@host")
        if found.password is None
        else ("user name", f"username_file=PATH, ${USERNAME_ENV} or etcd://user@host")
    )
    raise ConfigurationError(
        f"etcd authentication needs a user name and a password; give the {missing} with {how}"
    )


def _endpoint(url: str, item: str) -> tuple[str, int]:
    host, port = item, DEFAULT_PORT
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        if rest:
            port = _port(url, rest.removeprefix(":"))
    elif ":" in item:
        host, _, text = item.partition(":")
        port = _port(url, text)
    if not host:
        raise ConfigurationError(f"invalid etcd URL {redact(url)!r}: a host is empty; {_USAGE}")
    return host, port


def _port(url: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigurationError(
            f"invalid port in etcd URL {redact(url)!r}: a port is a number from 1 to 65535"
        )
    return int(text)


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the etcd TLS file {path!r}: {exc}") from exc
