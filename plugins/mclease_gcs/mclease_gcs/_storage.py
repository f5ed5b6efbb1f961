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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[import-untyped]

from mclease_core.plugin import (
    Capabilities,
    ConfigurationError,
    Deadline,
    ErrorMap,
    LeaseConflictError,
    LeaseData,
    LeaseObject,
    Option,
    OutcomeUnknownError,
    Storage,
    StorageError,
    StorageURL,
    already_exists,
    conflict,
    decode_lease_data,
    encode_lease_data,
    map_errors,
    not_found,
    outcome_unknown,
    permission_denied,
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
TIMEOUT = Option.seconds("timeout", DEFAULT_TIMEOUT)
DEADLINE = Option.seconds("deadline", DEFAULT_DEADLINE)
PROJECT, ENDPOINT = Option.text("project"), Option.text("endpoint")
ANONYMOUS = Option.flag("anonymous")
OPTIONS: tuple[Option[Any], ...] = (TIMEOUT, DEADLINE, PROJECT, ENDPOINT, ANONYMOUS)
_USAGE = (
    "expected gs://bucket[/prefix][?timeout=SECONDS&deadline=SECONDS&project=ID&endpoint=URL"
    "&anonymous=true]; credentials come from Application Default Credentials (Workload Identity "
    "in GKE), never from the URL"
)
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
        parsed = StorageURL.parse(
            url,
            backend="gs",
            schemes=("gs",),
            options=OPTIONS,
            takes_credentials=False,
            usage=_USAGE,
        )
        if parsed.port is not None:
            raise parsed.error("a bucket name has no port")
        return cls(
            parsed.host,
            prefix=parsed.path.strip("/") or DEFAULT_PREFIX,
            timeout=parsed.get(TIMEOUT),
            deadline=parsed.get(DEADLINE),
            project=parsed.get(PROJECT) or None,
            endpoint=parsed.get(ENDPOINT) or None,
            anonymous=parsed.get(ANONYMOUS),
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
        version = self._write(key, raw, 0, lambda: already_exists(key, "gs"))
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

        def resolve(exc: Exception, deadline: Deadline) -> None:  # an attempt may have deleted it
            raise self._unknown(key, exc) from exc

        self._retrying(
            key, attempt, _GONE, refused=lambda: self._conflict(key, version), resolve=resolve
        )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # ----- helpers -----------------------------------------------------------------------------

    def _read_raw(self, key: str, deadline: Deadline | None = None) -> tuple[bytes, int]:
        blob = self._bucket().blob(self.object_name(key))

        def attempt(timeout: float) -> bytes:
            raw: bytes = blob.download_as_bytes(timeout=timeout, retry=None)
            return raw

        raw = self._retrying(
            key,
            attempt,
            _MISSING,
            write=False,
            refused=lambda: not_found(key, "gs"),
            deadline=deadline,
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
            resolve=lambda exc, deadline: self._resolve(key, raw, exc, deadline),
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
        resolve: Callable[[Exception, Deadline], Any] | None = None,
        deadline: Deadline | None = None,
    ) -> Any:
        """Run ``attempt`` until it succeeds or the deadline passes. An answer in ``conditions``
        (412, 404) means ``refused()``, unless an earlier attempt may have been applied: then
        ``resolve(exc, deadline)`` decides, within what is left of the same deadline (so the
        whole operation stays within ``operation_timeout``)."""
        if deadline is None:
            where = f"gs://{self.bucket_name}"
            deadline = Deadline(self.deadline, key=key, backend="gs", write=write, what=where)
        attempts = Attempts(timeout=self.timeout, deadline=deadline)
        with self._errors(key):
            for timeout in attempts:
                try:
                    return attempt(timeout)
                except conditions as exc:
                    if attempts.maybe_applied and resolve is not None:
                        return resolve(exc, deadline)
                    raise refused() from exc
                except Exception as exc:
                    attempts.failed(exc)
            raise attempts.gave_up()

    def _resolve(self, key: str, raw: bytes, exc: Exception, deadline: Deadline) -> int:
        """A retried write met a failed precondition after an attempt that may have been applied:
        it was, if the object holds exactly our bytes."""
        try:
            stored, generation = self._read_raw(key, deadline)
        except StorageError as error:
            raise self._unknown(key, exc) from error
        if stored == raw:
            return generation
        raise self._unknown(key, exc)

    def _unknown(self, key: str, exc: Exception) -> OutcomeUnknownError:
        return outcome_unknown(
            f"a retried write to gs://{self.bucket_name} failed its precondition ({exc}) after an "
            "earlier attempt that may have been applied",
            key=key,
            backend="gs",
        )

    def _conflict(self, key: str, expected: int) -> LeaseConflictError:
        return conflict(key, "gs", expected=expected)

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
        where = f"gs://{self.bucket_name}"
        mapping: ErrorMap = {
            auth_exceptions.DefaultCredentialsError: lambda exc: ConfigurationError(
                f"no Google credentials for {where}: {exc}; set up Application Default "
                "Credentials (GOOGLE_APPLICATION_CREDENTIALS or workload identity), or "
                "STORAGE_EMULATOR_HOST for an emulator"
            ),
            (api_exceptions.Unauthorized, api_exceptions.Forbidden): lambda exc: permission_denied(
                f"{where} refused the credentials or the permission ({exc}); grant the service "
                "account roles/storage.objectUser on the bucket"
            ),
            (api_exceptions.GoogleAPICallError, auth_exceptions.GoogleAuthError): (
                lambda exc: StorageError(
                    f"{where} refused the request: {exc}", key=key, backend="gs"
                )
            ),
        }
        with map_errors(mapping, key=key, backend="gs"):
            yield
