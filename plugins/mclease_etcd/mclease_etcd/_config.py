"""Parsing ``etcd://`` and ``etcds://`` URLs into an :class:`EtcdConfig`, with clear errors.

The URL is parsed by the core's :class:`~mclease_core.plugin.StorageURL` (hosts, typed options,
TLS-only options, redaction). The user and password come from it too: each from exactly one of
the URL's user info, ``username_file=``/``password_file=`` (a mounted Secret) or
``$MCLEASE_STORAGE_USERNAME``/``$MCLEASE_STORAGE_PASSWORD``; etcd needs both or neither. Every
message names the URL redacted.

Not here: connecting (``_storage`` connects lazily, on the first operation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import grpc

from mclease_core.plugin import (
    PASSWORD_ENV,
    USERNAME_ENV,
    ConfigurationError,
    Credentials,
    Option,
    StorageURL,
)

DEFAULT_PORT = 2379
DEFAULT_PREFIX = "mclease"
DEFAULT_TIMEOUT = 5.0
TIMEOUT = Option.seconds("timeout", DEFAULT_TIMEOUT)
CA_CERT, CERT_CERT, CERT_KEY = (
    Option.text(name, tls_only=True) for name in ("ca_cert", "cert_cert", "cert_key")
)
OPTIONS: tuple[Option[Any], ...] = (TIMEOUT, CA_CERT, CERT_CERT, CERT_KEY)
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
        parsed = StorageURL.parse(
            url,
            backend="etcd",
            schemes=("etcd", "etcds"),
            options=OPTIONS,
            hosts="several",
            default_port=DEFAULT_PORT,
            tls_schemes=("etcds",),
            usage=_USAGE,
        )
        found = _both_or_neither(parsed.credentials)
        if parsed.given(CERT_CERT) != parsed.given(CERT_KEY):
            raise ConfigurationError(f"cert_cert and cert_key go together in {parsed.redacted!r}")
        return cls(
            endpoints=tuple((end.host, end.port or DEFAULT_PORT) for end in parsed.endpoints),
            prefix=parsed.path.strip("/") or DEFAULT_PREFIX,
            timeout=parsed.get(TIMEOUT),
            user=found.username,
            password=found.password,
            credentials=found if found.password is not None else None,
            tls=parsed.scheme == "etcds",
            ca_cert=parsed.get(CA_CERT) or None,
            cert_cert=parsed.get(CERT_CERT) or None,
            cert_key=parsed.get(CERT_KEY) or None,
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


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the etcd TLS file {path!r}: {exc}") from exc
