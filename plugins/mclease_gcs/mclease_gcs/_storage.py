"""``gs://bucket/prefix[?timeout=S&deadline=S&project=P&endpoint=URL&anonymous=true]``.

A lease is one object, ``<prefix>/<lease key>``, holding the encoded record (JSON, so
``gcloud storage cat`` shows it). Its version is the object's generation, which GCS raises on every
write and never reuses, also across delete and recreate. Create writes with
``ifGenerationMatch=0``; update writes with ``ifGenerationMatch=<version>``; delete names the
generation and ``ifGenerationMatch=<version>``, so it can only remove exactly that generation.
GCS answers 412 when the condition fails: a conflict.

Requests are retried here, not in the client library (see ``_retry``): a write retried after an
attempt that may have been applied and then answered 412 is resolved by re-reading the object:
our own bytes mean the earlier attempt won; anything else raises :class:`OutcomeUnknownError`.
Running out of the ``deadline`` raises :class:`StorageUnavailableError` (429 included), or
:class:`OutcomeUnknownError` when a write may have been applied.

GCS sustains about one write per second per object, so the backend declares
``min_write_interval=1.0`` and the elector refuses a shorter retry period.

Credentials come from Application Default Credentials. ``STORAGE_EMULATOR_HOST`` (or
``endpoint=`` with ``anonymous=true``) points the client at an emulator such as fake-gcs-server.

Not here: creating buckets, object versioning, retention policies. Use a bucket without object
versioning, retention or holds (a versioned bucket works but keeps no history of leases: deletes
name the generation and so remove it outright).
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[import-untyped]

from mclease_core import (
    Capabilities,
    ConfigurationError,
    LeaseAlreadyExistsError,
    LeaseConflictError,
    LeaseData,
    LeaseNotFoundError,
    LeaseObject,
    OutcomeUnknownError,
    Storage,
    StorageError,
    StorageUnavailableError,
    decode_lease_data,
    encode_lease_data,
    redact,
    seconds_option,
    url_options,
    validate_key,
)

from ._retry import Attempts

DEFAULT_PREFIX = "mclease"
DEFAULT_TIMEOUT = 5.0
DEFAULT_DEADLINE = 15.0
MIN_WRITE_INTERVAL = 1.0
CONTENT_TYPE = "application/json"
_PRECONDITION = (api_exceptions.PreconditionFailed,)
_MISSING = (api_exceptions.NotFound,)
_GONE = _PRECONDITION + _MISSING
_OPTIONS = {"timeout", "deadline", "project", "endpoint", "anonymous"}
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


class GCSStorage(Storage):
    """Lease records as objects in one GCS bucket, written with generation preconditions."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        project: str | None = None,
        endpoint: str | None = None,
        anonymous: bool = False,
        client: storage.Client | None = None,
    ):
        if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise ConfigurationError(
                f"invalid GCS bucket name {bucket[:80]!r}: 3 to 63 lowercase letters, digits, "
                "'-', '_' and '.', starting and ending with a letter or digit"
            )
        if not 0 < timeout <= deadline:
            raise ConfigurationError(
                f"gs:// needs 0 < timeout <= deadline, got timeout={timeout}, deadline={deadline}"
            )
        self.bucket_name = bucket
        self.prefix = prefix
        self.timeout = timeout
        self.deadline = deadline
        self.project = project
        self.endpoint = endpoint
        self.anonymous = anonymous
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> GCSStorage:
        """Open a store from a ``gs://`` URL without contacting GCS."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "gs" or not parts.netloc or parts.fragment:
            raise ConfigurationError(
                f"invalid GCS URL {redact(url)!r}: expected gs://bucket[/prefix][?timeout=SECONDS"
                "&deadline=SECONDS&project=ID&endpoint=URL&anonymous=true]"
            )
        if "@" in parts.netloc:
            raise ConfigurationError(
                f"invalid GCS URL {redact(url)!r}: gs:// takes no user or password; credentials "
                "come from Application Default Credentials (Workload Identity in GKE)"
            )
        options = url_options(url, _OPTIONS, backend="gs")
        return cls(
            parts.netloc,
            prefix=urllib.parse.unquote(parts.path).strip("/") or DEFAULT_PREFIX,
            timeout=seconds_option(options, "timeout", DEFAULT_TIMEOUT, url=url, backend="gs"),
            deadline=seconds_option(options, "deadline", DEFAULT_DEADLINE, url=url, backend="gs"),
            project=options.get("project") or None,
            endpoint=options.get("endpoint") or None,
            anonymous=options.get("anonymous", "false").lower() in ("1", "true", "yes"),
        )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            min_write_interval=MIN_WRITE_INTERVAL, operation_timeout=self.deadline + 1.0
        )

    def object_name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}"

    # ----- the four operations ---------------------------------------------------------------

    def read(self, key: str) -> LeaseObject:
        raw, generation = self._read_raw(key)
        return LeaseObject(decode_lease_data(raw, key=key, backend="gs"), generation)

    def create(self, key: str, data: LeaseData) -> LeaseObject:
        raw = encode_lease_data(data)
        version = self._write(
            key,
            raw,
            0,
            lambda: LeaseAlreadyExistsError("lease record already exists", key=key, backend="gs"),
        )
        return LeaseObject(data, version)

    def update(self, key: str, data: LeaseData, *, version: int) -> LeaseObject:
        if version < 1:  # ifGenerationMatch=0 would turn the update into a create
            raise self._conflict(key, version)
        raw = encode_lease_data(data)
        new_version = self._write(key, raw, version, lambda: self._conflict(key, version))
        return LeaseObject(data, new_version)

    def delete(self, key: str, *, version: int) -> None:
        name = self.object_name(key)
        if version < 1:
            raise self._conflict(key, version)

        def attempt(timeout: float) -> None:
            self._bucket().delete_blob(
                name, generation=version, if_generation_match=version, timeout=timeout, retry=None
            )

        def resolve(exc: Exception) -> None:  # the earlier attempt may have deleted it
            raise self._unknown(key, exc) from exc

        self._retrying(
            key, attempt, _GONE, refused=lambda: self._conflict(key, version), resolve=resolve
        )

    def put_raw(self, key: str, raw: bytes) -> None:
        """Store ``raw`` as the record under ``key``, bypassing the codec (tests of corruption)."""
        blob = self._bucket().blob(self.object_name(key))
        with self._errors(key):
            blob.upload_from_string(raw, content_type=CONTENT_TYPE, timeout=self.timeout)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # ----- helpers -----------------------------------------------------------------------------

    def _read_raw(self, key: str) -> tuple[bytes, int]:
        blob = self._bucket().blob(self.object_name(key))

        def attempt(timeout: float) -> bytes:
            raw: bytes = blob.download_as_bytes(timeout=timeout, retry=None)
            return raw

        raw = self._retrying(
            key,
            attempt,
            _MISSING,
            write=False,
            refused=lambda: LeaseNotFoundError("no lease record", key=key, backend="gs"),
        )
        if blob.generation is None:
            raise StorageError("GCS did not report the object's generation", key=key, backend="gs")
        return raw, int(blob.generation)

    def _write(
        self, key: str, raw: bytes, expected: int, refused: Callable[[], StorageError]
    ) -> int:
        """Upload ``raw`` if the object's generation is ``expected`` (0: absent)."""
        name = self.object_name(key)

        def attempt(timeout: float) -> int:
            blob = self._bucket().blob(name)
            blob.upload_from_string(
                raw,
                content_type=CONTENT_TYPE,
                if_generation_match=expected,
                timeout=timeout,
                retry=None,
            )
            return int(blob.generation)

        # 404 here means the bucket is missing: not a condition, an error (see _errors)
        version: int = self._retrying(
            key,
            attempt,
            _PRECONDITION,
            refused=refused,
            resolve=lambda exc: self._resolve(key, raw, exc),
        )
        return version

    def _retrying(
        self,
        key: str,
        attempt: Callable[[float], Any],
        conditions: tuple[type[Exception], ...],
        *,
        refused: Callable[[], StorageError],
        write: bool = True,
        resolve: Callable[[Exception], Any] | None = None,
    ) -> Any:
        """Run ``attempt`` until it succeeds or the deadline passes. An answer in ``conditions``
        (412, 404) means ``refused()``, unless an earlier attempt may have been applied: then
        ``resolve(exc)`` decides."""
        attempts = Attempts(timeout=self.timeout, deadline=self.deadline, write=write)
        with self._errors(key):
            for timeout in attempts:
                try:
                    return attempt(timeout)
                except conditions as exc:
                    if attempts.maybe_applied and resolve is not None:
                        return resolve(exc)
                    raise refused() from exc
                except Exception as exc:
                    attempts.failed(exc)
            raise self._gave_up(key, attempts)

    def _resolve(self, key: str, raw: bytes, exc: Exception) -> int:
        """A retried write met a failed precondition after an attempt that may have been applied:
        it was, if the object holds exactly our bytes."""
        try:
            stored, generation = self._read_raw(key)
        except StorageError as error:
            raise self._unknown(key, exc) from error
        if stored == raw:
            return generation
        raise self._unknown(key, exc)

    def _unknown(self, key: str, exc: Exception) -> OutcomeUnknownError:
        return OutcomeUnknownError(
            f"a retried write to gs://{self.bucket_name} failed its precondition ({exc}) after an "
            "earlier attempt that may have been applied; re-read the record",
            key=key,
            backend="gs",
        )

    def _gave_up(self, key: str, attempts: Attempts) -> StorageError:
        where = f"gs://{self.bucket_name}"
        if attempts.maybe_applied:
            return OutcomeUnknownError(
                f"no attempt to write {where} succeeded within {self.deadline:g}s and one may "
                f"have been applied (last error: {attempts.last_error}); re-read the record",
                key=key,
                backend="gs",
            )
        return StorageUnavailableError(
            f"{where} did not answer within {self.deadline:g}s (last error: {attempts.last_error})",
            key=key,
            backend="gs",
        )

    def _conflict(self, key: str, expected: int) -> LeaseConflictError:
        return LeaseConflictError(
            f"expected generation {expected}, but the object has another one or does not exist",
            key=key,
            backend="gs",
        )

    def _bucket(self) -> storage.Bucket:
        with self._lock, self._errors(None):
            if self._client is None:
                self._client = self._new_client()
            return self._client.bucket(self.bucket_name)

    def _new_client(self) -> storage.Client:
        options = {"api_endpoint": self.endpoint} if self.endpoint else None
        credentials = AnonymousCredentials() if self.anonymous else None  # type: ignore[no-untyped-call]
        return storage.Client(project=self.project, credentials=credentials, client_options=options)

    @contextmanager
    def _errors(self, key: str | None) -> Iterator[None]:
        """Map the errors no retry can help with, chaining the cause."""
        try:
            yield
        except (StorageError, ConfigurationError):
            raise
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"no Google credentials for gs://{self.bucket_name}: {exc}; set up Application "
                "Default Credentials (GOOGLE_APPLICATION_CREDENTIALS or workload identity), or "
                "STORAGE_EMULATOR_HOST for an emulator"
            ) from exc
        except (api_exceptions.GoogleAPICallError, auth_exceptions.GoogleAuthError) as exc:
            raise StorageError(
                f"gs://{self.bucket_name} refused the request: {exc}", key=key, backend="gs"
            ) from exc
