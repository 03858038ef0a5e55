"""A DICOMweb (PS3.18) client for a PACS: store results (STOW-RS), find and fetch series.

A thin layer over ``dicomweb-client`` that turns transport and protocol failures into
:class:`PacsError` with a message that names the operation and the HTTP status, never
patient data.

STOW-RS sends files as they are (:meth:`PacsClient.store_files`): a stored instance goes out
byte for byte, without a parse and a re-encode. :meth:`PacsClient.store` encodes datasets
first, as ``dicomweb-client``'s ``store_instances`` does, and sends them the same way.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from radserve.dicom_io import DicomIOError

logger = logging.getLogger(__name__)


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
        self._client = DICOMwebClient(url=self.url, timeout=timeout_s, headers=headers)
        self._client.set_http_retry_params(retry=attempts > 1, max_attempts=max(attempts, 1))

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
            # The multipart POST of dicomweb-client's store_instances, minus its dcmwrite of
            # each dataset: same body, chunking, retries (set_http_retry_params) and parsing.
            response: Dataset = self._client._http_post_multipart_application_dicom(
                f"{self.url}/studies", list(files)
            )
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


def _encode(ds: Dataset) -> bytes:
    with io.BytesIO() as buffer:
        pydicom.dcmwrite(buffer, ds)
        return buffer.getvalue()


def _describe(exc: requests.RequestException) -> str:
    response = exc.response
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(exc).__name__
