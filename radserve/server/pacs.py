"""A DICOMweb (PS3.18) client for a PACS: store results (STOW-RS), find and fetch series.

A thin layer over ``dicomweb-client`` that turns transport and protocol failures into
:class:`PacsError` with a message that names the operation and the HTTP status, never
patient data.

STOW-RS sends files as they are (:meth:`PacsClient.store_files`): a stored instance goes out
byte for byte, without a parse and a re-encode, so the multipart request is framed here and
posted on the client's session (``dicomweb-client``'s ``store_instances`` takes datasets
only). :meth:`PacsClient.store` encodes datasets first and sends them the same way.
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from radserve.dicom_io import DicomIOError

logger = logging.getLogger(__name__)

# Statuses worth another try, as dicomweb-client's set_http_retry_params retries them.
_RETRIABLE_STATUSES = frozenset({408, 429, 503, 504})


class PacsError(DicomIOError):
    """A DICOMweb request to a PACS failed."""


@dataclass(frozen=True)
class StoreResult:
    """Outcome of one STOW-RS request.

    Attributes:
        stored_sop_instance_uids: Instances the PACS acknowledged.
        failed_sop_instance_uids: Instances the PACS refused (Failed SOP Sequence).
    """

    stored_sop_instance_uids: tuple[str, ...]
    failed_sop_instance_uids: tuple[str, ...]


def _uids(response: Dataset, keyword: str) -> tuple[str, ...]:
    return tuple(str(item.ReferencedSOPInstanceUID) for item in response.get(keyword, []))


class PacsClient:
    """DICOMweb access to one PACS.

    Args:
        url: The DICOMweb root, e.g. ``http://pacs:8042/dicom-web``.
        timeout_s: Per-request timeout.
        headers: Extra HTTP headers (e.g. ``Authorization``).
        attempts: Tries per request for retriable HTTP errors (429, 503, ...), with
            exponential back-off; 1 means no retry (callers with a durable queue retry).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 60.0,
        headers: dict[str, str] | None = None,
        attempts: int = 1,
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._attempts = max(attempts, 1)
        self._session = requests.Session()
        self._session.headers.update(headers or {})
        self._client = DICOMwebClient(url=self.url, session=self._session, timeout=timeout_s)
        self._client.set_http_retry_params(retry=attempts > 1, max_attempts=self._attempts)

    def store(self, datasets: Sequence[Dataset]) -> StoreResult:
        """Store instances over STOW-RS; raise :class:`PacsError` if any is refused."""
        if not datasets:
            raise ValueError("nothing to store")
        return self.store_files([_encode(ds) for ds in datasets])

    def store_files(self, files: Sequence[bytes]) -> StoreResult:
        """Store DICOM files (Part 10 bytes, sent as they are) over STOW-RS.

        Raises:
            PacsError: The request failed, or the PACS refused any instance.
            ValueError: ``files`` is empty.
        """
        if not files:
            raise ValueError("nothing to store")
        try:
            response = _response_dataset(self._post_multipart(list(files)))
        except requests.RequestException as exc:
            raise PacsError(f"STOW-RS to {self.url} failed: {_describe(exc)}") from exc
        result = StoreResult(
            stored_sop_instance_uids=_uids(response, "ReferencedSOPSequence"),
            failed_sop_instance_uids=_uids(response, "FailedSOPSequence"),
        )
        if result.failed_sop_instance_uids:
            raise PacsError(
                f"STOW-RS to {self.url}: {len(result.failed_sop_instance_uids)} of "
                f"{len(files)} instances refused"
            )
        logger.info("stored %d instances at %s", len(result.stored_sop_instance_uids), self.url)
        return result

    def _post_multipart(self, files: list[bytes]) -> requests.Response:
        """POST ``files`` as one multipart/related request, retried like the other requests.

        Raises:
            requests.RequestException: The request failed, or its final status is an error.
        """
        boundary = secrets.token_hex(16)
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        for attempt in range(1, self._attempts + 1):
            response = self._session.post(
                f"{self.url}/studies",
                data=_multipart_body(boundary, files),
                headers=headers,
                timeout=self._timeout_s,
            )
            if response.status_code not in _RETRIABLE_STATUSES or attempt == self._attempts:
                break
            response.close()
            time.sleep(2.0**attempt)  # dicomweb-client's back-off: 2 s, 4 s, 8 s, ...
        response.raise_for_status()
        return response

    def series_uids(self, study_instance_uid: str) -> list[str]:
        """Series Instance UIDs of a study (QIDO-RS)."""
        try:
            found = self._client.search_for_series(study_instance_uid=study_instance_uid)
        except requests.RequestException as exc:
            raise PacsError(f"QIDO-RS at {self.url} failed: {_describe(exc)}") from exc
        return [str(item["0020000E"]["Value"][0]) for item in found]

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str) -> list[Dataset]:
        """All instances of a series (WADO-RS)."""
        try:
            instances: list[Dataset] = self._client.retrieve_series(
                study_instance_uid, series_instance_uid
            )
        except requests.RequestException as exc:
            raise PacsError(f"WADO-RS from {self.url} failed: {_describe(exc)}") from exc
        return instances


def _multipart_body(boundary: str, files: Sequence[bytes]) -> Iterator[bytes]:
    """The multipart/related body, streamed (sent with chunked transfer encoding).

    Framed here rather than with the routes' helpers: the routes import this module.
    """
    for data in files:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")
        yield data
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


def _response_dataset(response: requests.Response) -> Dataset:
    """The STOW-RS response as a dataset; empty when the PACS sent no DICOM JSON."""
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not response.content or media_type not in ("application/dicom+json", "application/json"):
        return Dataset()
    return Dataset.from_json(response.json())


def _encode(ds: Dataset) -> bytes:
    with io.BytesIO() as buffer:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()


def _describe(exc: requests.RequestException) -> str:
    response = exc.response
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(exc).__name__
