"""Single frames of an instance's Pixel Data, read without decoding the rest.

:func:`read_pixel_layout` reads the header once (Pixel Data itself is deferred, not read) and
notes where the value lies in the file: for native pixel data the value offset, from which
frame ``k`` is cut by seeking; for encapsulated pixel data the file position and length of
every fragment, grouped into frames (one fragment per frame, all fragments of a single
frame, or the Extended / Basic Offset Table). A layout is a small frozen value: the caller
may cache it per file.

1-bit pixel data (Bits Allocated 1, e.g. a binary SEG) is packed without byte alignment
between frames (PS3.5 8.1.1, least significant bit first), so a frame may start inside a
byte: :func:`read_frame` cuts it at its bit offset and re-packs it from bit 0, padded with
zero bits to whole bytes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom import uid as pydicom_uid
from pydicom.encaps import encapsulate, get_frame
from pydicom.errors import InvalidDicomError as PydicomInvalidDicomError
from pydicom.pixels.utils import pack_bits, pixel_array

from radserve.dicom_io.errors import InvalidDicomError, UnsupportedTransferSyntaxError
from radserve.dicom_io.reading.transfer_syntax import (
    ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN,
    FrameTask,
    check_transfer_syntax,
    decode_frame,
    is_encapsulated,
    needs_joined_fragments,
)

PIXEL_DATA_TAG = 0x7FE00010
#: Native syntaxes whose Pixel Data bytes in the file are the little endian frames themselves.
SEEKABLE_TRANSFER_SYNTAXES = frozenset(
    {pydicom_uid.ImplicitVRLittleEndian, pydicom_uid.ExplicitVRLittleEndian}
)
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_DEFER_BYTES = 1024

Fragment = tuple[int, int]
"""A fragment's value in the file: ``(offset, length)``."""


@dataclass(frozen=True)
class PixelLayout:
    """Where an instance's Pixel Data lies in its file, and how its frames are encoded.

    Attributes:
        transfer_syntax_uid: The file's transfer syntax.
        vr: The Pixel Data VR (``OB`` or ``OW``).
        value_offset: File position of the Pixel Data value.
        value_length: Its length (``0xFFFFFFFF`` when encapsulated).
        number_of_frames: Number of Frames (1 when absent).
        pixel: The Image Pixel description, in pydicom's option names (``rows``,
            ``columns``, ``samples_per_pixel``, ``bits_allocated``, ``bits_stored``,
            ``pixel_representation``, ``photometric_interpretation``, and
            ``planar_configuration`` for colour).
        frames: For encapsulated pixel data, the fragments of each frame; ``None`` when
            native, or when the fragments cannot be assigned to frames without parsing
            the codestreams (then :func:`read_frame` asks pydicom).
    """

    transfer_syntax_uid: str
    vr: str
    value_offset: int
    value_length: int
    number_of_frames: int
    pixel: dict[str, int | str]
    frames: tuple[tuple[Fragment, ...], ...] | None = None

    @property
    def encapsulated(self) -> bool:
        """Whether the pixel data is encapsulated (compressed)."""
        return is_encapsulated(self.transfer_syntax_uid)

    @property
    def seekable(self) -> bool:
        """Whether native frames can be cut from the file as they are."""
        return self.transfer_syntax_uid in SEEKABLE_TRANSFER_SYNTAXES

    @property
    def frame_bits(self) -> int:
        """Bits in one native frame."""
        p = self.pixel
        return int(p["rows"]) * int(p["columns"]) * int(p["samples_per_pixel"]) * self.bits

    @property
    def bits(self) -> int:
        """Bits Allocated."""
        return int(self.pixel["bits_allocated"])

    @property
    def native_frame_bytes(self) -> int:
        """Bytes of one native frame as sent (1-bit frames padded to whole bytes)."""
        return math.ceil(self.frame_bits / 8)


def read_pixel_layout(path: str | Path) -> PixelLayout | None:
    """The Pixel Data layout of a file, or ``None`` when it has no (integer) Pixel Data.

    Raises:
        InvalidDicomError: The file is not readable DICOM, or its Image Pixel module or
            encapsulation is broken.
    """
    try:
        ds = dcmread(str(path), defer_size=_DEFER_BYTES, force=True)
        element = ds.get_item(PIXEL_DATA_TAG, keep_deferred=True)
    except (OSError, PydicomInvalidDicomError, ValueError, struct.error) as exc:
        raise InvalidDicomError(f"instance cannot be read ({type(exc).__name__})") from exc
    if element is None:
        return None
    uid = str(ds.file_meta.get("TransferSyntaxUID", "") or pydicom_uid.ImplicitVRLittleEndian)
    offset = getattr(element, "value_tell", None)
    if offset is None:
        raise InvalidDicomError("Pixel Data position unknown")
    try:
        bits_allocated = int(ds.BitsAllocated)
        pixel: dict[str, int | str] = {
            "rows": int(ds.Rows),
            "columns": int(ds.Columns),
            "samples_per_pixel": int(ds.get("SamplesPerPixel", 1) or 1),
            "bits_allocated": bits_allocated,
            "bits_stored": int(ds.get("BitsStored", bits_allocated) or bits_allocated),
            "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
            "photometric_interpretation": str(ds.PhotometricInterpretation),
        }
        if int(pixel["samples_per_pixel"]) > 1:
            pixel["planar_configuration"] = int(ds.get("PlanarConfiguration", 0) or 0)
        number_of_frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidDicomError(f"incomplete Image Pixel module ({exc})") from exc
    vr = element.VR or ("OB" if bits_allocated <= 8 and is_encapsulated(uid) else "OW")
    layout = PixelLayout(
        uid, str(vr), int(offset), int(getattr(element, "length", 0)), number_of_frames, pixel
    )
    if not layout.encapsulated:
        return layout
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = np.frombuffer(ds.ExtendedOffsetTable, dtype="<u8").tolist()
    with open(path, "rb") as fp:
        fp.seek(layout.value_offset)
        frames = _group_fragments(fp, number_of_frames, extended)
    return PixelLayout(
        uid, layout.vr, layout.value_offset, layout.value_length, number_of_frames, pixel, frames
    )


def _group_fragments(
    fp: BinaryIO, number_of_frames: int, extended: list[int] | None
) -> tuple[tuple[Fragment, ...], ...] | None:
    """Assign the fragments to frames where the encapsulation says how, else ``None``."""
    tag, length = _item_header(fp)
    if tag != _ITEM:
        raise InvalidDicomError("encapsulated Pixel Data has no Basic Offset Table item")
    basic = list(struct.unpack(f"<{length // 4}L", fp.read(length))) if length else []
    first = fp.tell()
    fragments: list[Fragment] = []  # (offset of the item tag, length)
    while True:
        tag, length = _item_header(fp)
        if tag == _SEQUENCE_DELIMITER or tag is None:
            break
        if tag != _ITEM or length == 0xFFFFFFFF:
            raise InvalidDicomError("broken encapsulated Pixel Data (fragment items)")
        fragments.append((fp.tell() - 8, length))
        fp.seek(length, 1)
    if not fragments:
        raise InvalidDicomError("encapsulated Pixel Data holds no fragment")
    values = [(start + 8, length) for start, length in fragments]
    if number_of_frames == 1:
        return (tuple(values),)
    if len(values) == number_of_frames:
        return tuple((value,) for value in values)
    starts = extended or basic
    if len(starts) != number_of_frames:
        return None
    by_start = {start - first: k for k, (start, _) in enumerate(fragments)}
    if any(s not in by_start for s in starts):
        raise InvalidDicomError("offset table does not point at fragments")
    bounds = [by_start[s] for s in starts] + [len(values)]
    return tuple(tuple(values[bounds[k] : bounds[k + 1]]) for k in range(number_of_frames))


def _item_header(fp: BinaryIO) -> tuple[int | None, int]:
    data = fp.read(8)
    if len(data) < 8:
        return (None, 0)
    group, element, length = struct.unpack("<HHL", data)
    return (group << 16 | element, length)


def _check_index(layout: PixelLayout, index: int) -> None:
    if not 0 <= index < layout.number_of_frames:
        raise IndexError(f"frame index {index} outside 0..{layout.number_of_frames - 1}")


def read_frame(path: str | Path, layout: PixelLayout, index: int) -> bytes:
    """The bytes of frame ``index`` (from 0) as stored.

    Native: the little endian frame (1-bit frames re-packed from bit 0). Encapsulated: the
    frame's fragments joined, i.e. its compressed bitstream.

    Raises:
        IndexError: No such frame.
        InvalidDicomError: The file is shorter than its Pixel Data says.
    """
    _check_index(layout, index)
    if layout.encapsulated:
        return _read_encapsulated_frame(path, layout, index)
    if not layout.seekable:
        return native_bytes(decode_frame_array(path, layout, index), layout.bits)
    start_bit = index * layout.frame_bits
    start = start_bit // 8
    shift = start_bit % 8
    count = math.ceil((shift + layout.frame_bits) / 8)
    with open(path, "rb") as fp:
        fp.seek(layout.value_offset + start)
        data = fp.read(count)
    if len(data) < count:
        raise InvalidDicomError(f"frame {index + 1} is truncated in the file")
    if layout.bits != 1 or (shift == 0 and layout.frame_bits % 8 == 0):
        return data
    value = int.from_bytes(data, "little") >> shift
    value &= (1 << layout.frame_bits) - 1  # the next frame's bits are not this frame's
    return value.to_bytes(layout.native_frame_bytes, "little")


def _read_encapsulated_frame(path: str | Path, layout: PixelLayout, index: int) -> bytes:
    if layout.frames is None:  # pydicom finds the frame boundaries in the codestreams
        with open(path, "rb") as fp:
            fp.seek(layout.value_offset)
            try:
                return get_frame(fp, index, number_of_frames=layout.number_of_frames)
            except (ValueError, struct.error) as exc:
                raise InvalidDicomError(f"frame {index + 1} cannot be found") from exc
    parts: list[bytes] = []
    with open(path, "rb") as fp:
        for offset, length in layout.frames[index]:
            fp.seek(offset)
            parts.append(fp.read(length))
    return b"".join(parts)


def read_pixel_value(path: str | Path, layout: PixelLayout) -> bytes:
    """The stored Pixel Data value of a native instance (all frames, as in the file).

    Raises:
        ValueError: The pixel data is encapsulated.
    """
    if layout.encapsulated:
        raise ValueError("encapsulated Pixel Data has no single native value")
    if not layout.seekable:
        frames = range(layout.number_of_frames)
        return b"".join(read_frame(path, layout, k) for k in frames)
    with open(path, "rb") as fp:
        fp.seek(layout.value_offset)
        return fp.read(layout.value_length)


def can_decode(layout: PixelLayout) -> bool:
    """Whether the installed codecs decode this pixel data."""
    try:
        check_transfer_syntax(layout.transfer_syntax_uid)
    except UnsupportedTransferSyntaxError:
        return False
    return True


def decode_frame_array(
    path: str | Path, layout: PixelLayout, index: int
) -> npt.NDArray[np.generic]:
    """Frame ``index`` decoded: ``(rows, columns)`` or ``(rows, columns, samples)``.

    Raises:
        IndexError: No such frame.
        UnsupportedTransferSyntaxError: No codec for the transfer syntax.
        InvalidDicomError: The frame cannot be decoded.
    """
    _check_index(layout, index)
    uid = layout.transfer_syntax_uid
    if not layout.encapsulated and not layout.seekable:  # big endian or deflated data set
        check_transfer_syntax(uid)
        array: npt.NDArray[np.generic] = pixel_array(str(path), index=index)
        return array
    data = read_frame(path, layout, index)
    if not layout.encapsulated:
        # A native frame is what Supplement 244's encapsulated uncompressed syntax holds.
        task = FrameTask(ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN, data, layout.pixel)
        return decode_frame(task)
    check_transfer_syntax(uid)
    if not needs_joined_fragments(uid, layout.bits):
        data = encapsulate([data])
    return decode_frame(FrameTask(uid, data, layout.pixel, f"frame {index + 1}"))


def native_bytes(array: npt.NDArray[np.generic], bits_allocated: int) -> bytes:
    """A decoded frame as native little endian bytes (1-bit: packed, LSB first)."""
    if bits_allocated == 1:
        return pack_bits(np.asarray(array), pad=False)
    dtype = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()
