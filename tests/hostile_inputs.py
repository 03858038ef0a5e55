"""Hostile DICOM inputs built in a few megabytes: shared by the reader's, STOW-RS's and the
whole server's memory tests."""

from __future__ import annotations

import io
import struct
import zlib

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian


def deflated_bomb(inflated_bytes: int) -> bytes:
    """A Deflated Explicit VR Little Endian file whose data set inflates to about
    ``inflated_bytes`` (a Pixel Data of zeros), built without holding the inflated bytes."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    written = buffer.getvalue()
    (group_length,) = struct.unpack("<I", written[140:144])
    meta = written[: 144 + group_length]
    plain = io.BytesIO()
    pydicom.dcmwrite(plain, Dataset(ds), implicit_vr=False, little_endian=True)
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    parts = [meta, deflater.compress(plain.getvalue())]
    parts.append(
        deflater.compress(b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", inflated_bytes))
    )
    zeros = bytes(8 * 1024 * 1024)
    for _ in range(inflated_bytes // len(zeros)):
        parts.append(deflater.compress(zeros))
    parts.append(deflater.flush())
    return b"".join(parts)
