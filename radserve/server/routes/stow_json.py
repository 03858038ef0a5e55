"""STOW-RS of metadata and bulk data (PS3.18 10.5.1.2.2): ``multipart/related;
type="application/dicom+json"``, whose first part is a DICOM JSON array of instances and
whose other parts are the bulk data those instances reference by ``BulkDataURI``, each
named by its ``Content-Location``.

Bulk data parts are spooled to files in the store's staging folder as they arrive (a part
stays in memory up to 1 MiB); the metadata part is held in memory, up to
:data:`MAX_METADATA_BYTES`. When the body is complete, each instance is built from its JSON
(``pydicom.Dataset.from_json``, the URIs resolved to the parts), given its File Meta
Information, encoded as a DICOM file and handed to the same batch as a binary STOW-RS part:
the same validation, the same durability, the same answer per instance.

The transfer syntax of an instance is its metadata's Transfer Syntax UID (0002,0010) when
given, else the ``transfer-syntax`` parameter of its Pixel Data part's Content-Type, else
Explicit VR Little Endian (native bulk data, ``application/octet-stream``). Compressed Pixel
Data is one frame a part.
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
from typing import IO, Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian

from radserve.dicom_io import InvalidDicomError, is_encapsulated
from radserve.server.errors import MalformedRequestError, PayloadTooLargeError
from radserve.server.routes.multipart import (
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    parse_media_type,
)
from radserve.server.store.batch import BatchOutcome
from radserve.server.store.instances import FailedInstance, InstanceStore

DICOM_JSON = "application/dicom+json"
MAX_METADATA_BYTES = 64 * 1024 * 1024
_SPOOL_BYTES = 1024 * 1024
_PIXEL_DATA = 0x7FE00010


class _Part:
    """One bulk data part: its media type's transfer syntax and its bytes, spooled."""

    def __init__(self, transfer_syntax_uid: str | None, folder: str) -> None:
        self.transfer_syntax_uid = transfer_syntax_uid
        # Closed (and removed) by the session's abort(), after the batch is committed.
        self.data: IO[bytes] = tempfile.SpooledTemporaryFile(_SPOOL_BYTES, dir=folder)  # noqa: SIM115

    def read(self) -> bytes:
        self.data.seek(0)
        return self.data.read()


class JsonStowSession:
    """The synchronous side of one STOW-RS request of metadata and bulk data (the same
    interface as :class:`~radserve.server.routes.stow.StowSession`).

    Args:
        store: Where the instances go.
        boundary: The multipart boundary.
        study_instance_uid: The study of the request URL, if any.
    """

    def __init__(
        self, store: InstanceStore, *, boundary: str, study_instance_uid: str | None
    ) -> None:
        self._store = store
        self._parser = MultipartParser(boundary)
        self._study_instance_uid = study_instance_uid
        self._folder = str(store.data_dir / "tmp")
        self._metadata: bytearray | None = None
        self._parts: dict[str, _Part] = {}
        self._current: bytearray | _Part | None = None
        self._count = 0

    def feed(self, data: bytes) -> None:
        """Parse the next bytes of the body."""
        for event in self._parser.feed(data):
            if isinstance(event, PartStart):
                self._start(event)
            elif isinstance(event, PartData):
                if isinstance(self._current, bytearray):
                    if len(self._current) + len(event.data) > MAX_METADATA_BYTES:
                        raise PayloadTooLargeError(
                            f"the metadata part is larger than {MAX_METADATA_BYTES} bytes"
                        )
                    self._current += event.data
                elif self._current is not None:
                    self._current.data.write(event.data)
            elif isinstance(event, PartEnd):
                self._current = None

    def _start(self, event: PartStart) -> None:
        self._count += 1
        media = parse_media_type(event.headers.get("content-type", DICOM_JSON))
        if self._count == 1:
            if media.type != DICOM_JSON:
                raise MalformedRequestError(f"the first part must be {DICOM_JSON}")
            self._metadata = self._current = bytearray()
            return
        location = event.headers.get("content-location")
        if not location:
            raise MalformedRequestError(f"part {self._count} has no Content-Location")
        part = _Part(media.parameters.get("transfer-syntax"), self._folder)
        self._parts[location] = self._current = part

    def finish(self) -> BatchOutcome:
        """Build, validate and store the instances; what was stored and what failed.

        Raises:
            MalformedRequestError: The body is incomplete, or its metadata is not a JSON
                array of objects.
        """
        self._parser.close()
        try:
            items = json.loads(bytes(self._metadata or b""))
        except (ValueError, RecursionError) as exc:  # RecursionError: hostile nesting
            raise MalformedRequestError("the metadata part is not JSON") from exc
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise MalformedRequestError("the metadata part must be a JSON array of data sets")
        refused: list[FailedInstance] = []
        batch = self._store.batch()
        try:
            for item in items:
                try:
                    encoded = self._instance(item)
                except InvalidDicomError as exc:
                    uids = _uid(item, "00080016"), _uid(item, "00080018")
                    refused.append(FailedInstance(*uids, exc))
                    continue
                staged = self._store.staged_file()
                staged.write(encoded)
                batch.add(staged, study_instance_uid=self._study_instance_uid)
            outcome = batch.commit()
        except BaseException:
            batch.abort()
            raise
        finally:
            self.abort()
        return BatchOutcome(outcome.stored, (*refused, *outcome.failed))

    def _instance(self, item: dict[str, Any]) -> bytes:
        """One instance as a DICOM file.

        Raises:
            InvalidDicomError: Its metadata is not DICOM JSON, or names a missing part.
        """
        used: list[_Part] = []

        def bulk(tag: str, vr: str, uri: str) -> bytes:
            part = self._part(uri)
            used.append(part)
            return part.read()

        try:
            ds = Dataset.from_json(
                {t: v for t, v in item.items() if not t.startswith("0002")},
                bulk_data_uri_handler=bulk,
            )
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            # The exception's text may quote a value (patient data): its type only.
            raise InvalidDicomError(
                f"the instance's DICOM JSON cannot be read ({type(exc).__name__})"
            ) from exc
        pixel_part = self._part(_uri(item, "7FE00010")) if _uri(item, "7FE00010") else None
        syntax = _uid(item, "00020010") or (
            pixel_part.transfer_syntax_uid if pixel_part is not None else None
        )
        syntax = syntax or str(ExplicitVRLittleEndian)
        if _PIXEL_DATA in ds and is_encapsulated(syntax):
            ds.PixelData = encapsulate([ds.PixelData])
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = UID(syntax)
        meta.MediaStorageSOPClassUID = UID(_uid(item, "00080016"))
        meta.MediaStorageSOPInstanceUID = UID(_uid(item, "00080018"))
        ds.file_meta = meta
        buffer = io.BytesIO()
        try:
            ds.save_as(buffer, enforce_file_format=True)
        except (AttributeError, TypeError, ValueError, OverflowError, struct.error) as exc:
            raise InvalidDicomError(
                f"the instance cannot be encoded as DICOM ({type(exc).__name__})"
            ) from exc
        return buffer.getvalue()

    def _part(self, uri: str) -> _Part:
        part = self._parts.get(uri) or next(
            (p for where, p in self._parts.items() if uri.endswith(where) or where.endswith(uri)),
            None,
        )
        if part is None:
            raise InvalidDicomError("a BulkDataURI names no part of the request")
        return part

    def abort(self) -> None:
        """Drop the spooled parts."""
        for part in self._parts.values():
            part.data.close()
        self._parts.clear()
        self._metadata = None


def _uid(item: dict[str, Any], tag: str) -> str:
    """The first value of ``tag`` when it is a string (``""`` for anything else)."""
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    first = values[0] if isinstance(values, list) and values else ""
    return first if isinstance(first, str) else ""


def _uri(item: dict[str, Any], tag: str) -> str:
    element = item.get(tag)
    uri = element.get("BulkDataURI") if isinstance(element, dict) else None
    return uri if isinstance(uri, str) else ""
