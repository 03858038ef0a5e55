"""Which transfer syntaxes radserve decodes, and pixel data decoding (in parallel).

A syntax is checked with :func:`check_transfer_syntax` before any decode, so an unsupported
one fails fast with its name instead of deep inside a codec. Supported:

* native: Implicit / Explicit VR Little Endian, Explicit VR Big Endian, Deflated Explicit VR
  Little Endian;
* through pydicom's codec plugins (only where a plugin is installed): RLE Lossless, JPEG
  Baseline, JPEG Extended, JPEG Lossless (Process 14 and SV1), JPEG-LS lossless and
  near-lossless, JPEG 2000 lossless and lossy, HTJ2K (all three);
* decoded here (pydicom 3.0 does not know them): Deflated Image Frame Compression and
  Encapsulated Uncompressed Explicit VR Little Endian (DICOM 2024, Supplement 244), and RLE
  Lossless with Bits Allocated 1 (one segment of packed bits per frame).

Everything else (video, JPIP, JPEG 2000 Part 2, retired JPEG processes, private syntaxes)
raises :class:`~radserve.dicom_io.errors.UnsupportedTransferSyntaxError`.

Parallelism: the codecs (OpenJPEG, libjpeg, CharLS, the RLE decoder) hold the GIL, so a
thread pool gives no speed-up (measured: 1.0x on 2 cores). Compressed frames go to a
process pool instead, started once per process with the ``forkserver`` method (safe in a
threaded server) and kept for later calls. Uncompressed pixel data needs no decoding: it is
returned as a zero-copy view.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import threading
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import uid as pydicom_uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from rle.utils import decode_segment  # type: ignore[attr-defined]  # re-exported

from radserve.dicom_io.errors import InvalidDicomError, UnsupportedTransferSyntaxError

logger = logging.getLogger(__name__)

DEFLATED_IMAGE_FRAME_COMPRESSION = "1.2.840.10008.1.2.8.1"
ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.98"

NATIVE_TRANSFER_SYNTAXES = frozenset(
    {
        pydicom_uid.ImplicitVRLittleEndian,
        pydicom_uid.ExplicitVRLittleEndian,
        pydicom_uid.ExplicitVRBigEndian,
        pydicom_uid.DeflatedExplicitVRLittleEndian,
    }
)
"""Pixel data stored as is (for Deflated Explicit VR the whole data set is deflated)."""

_CODEC_TRANSFER_SYNTAXES = (
    pydicom_uid.RLELossless,
    pydicom_uid.JPEGBaseline8Bit,
    pydicom_uid.JPEGExtended12Bit,
    pydicom_uid.JPEGLossless,
    pydicom_uid.JPEGLosslessSV1,
    pydicom_uid.JPEGLSLossless,
    pydicom_uid.JPEGLSNearLossless,
    pydicom_uid.JPEG2000Lossless,
    pydicom_uid.JPEG2000,
    pydicom_uid.HTJ2KLossless,
    pydicom_uid.HTJ2KLosslessRPCL,
    pydicom_uid.HTJ2K,
)

# The fastest single-threaded plugin per syntax (measured on CT slices). Single-threaded
# matters: we parallelise over frames, and GDCM's JPEG 2000 decoder starts its own threads.
# Where the preferred plugin fails, pydicom's default order is tried.
_PREFERRED_PLUGIN: dict[str, str] = {
    pydicom_uid.RLELossless: "pylibjpeg",
    pydicom_uid.JPEGBaseline8Bit: "pillow",
    pydicom_uid.JPEGExtended12Bit: "pylibjpeg",
    pydicom_uid.JPEGLossless: "gdcm",
    pydicom_uid.JPEGLosslessSV1: "gdcm",
    pydicom_uid.JPEGLSLossless: "pyjpegls",
    pydicom_uid.JPEGLSNearLossless: "pyjpegls",
    pydicom_uid.JPEG2000Lossless: "pylibjpeg",
    pydicom_uid.JPEG2000: "pylibjpeg",
    pydicom_uid.HTJ2KLossless: "pylibjpeg",
    pydicom_uid.HTJ2KLosslessRPCL: "pylibjpeg",
    pydicom_uid.HTJ2K: "pylibjpeg",
}

_FRAME_TRANSFER_SYNTAXES = frozenset(
    {DEFLATED_IMAGE_FRAME_COMPRESSION, ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN}
)

# Names for UIDs that pydicom 3.0 does not list.
_EXTRA_NAMES = {
    DEFLATED_IMAGE_FRAME_COMPRESSION: "Deflated Image Frame Compression",
    ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN: (
        "Encapsulated Uncompressed Explicit VR Little Endian"
    ),
    "1.2.840.10008.1.2.4.95": "JPIP Referenced Deflate",
}


def transfer_syntax_name(transfer_syntax_uid: str) -> str:
    """The DICOM name of a transfer syntax, or a label saying it is unknown."""
    if transfer_syntax_uid in _EXTRA_NAMES:
        return _EXTRA_NAMES[transfer_syntax_uid]
    name = pydicom_uid.UID(transfer_syntax_uid).name
    if name == transfer_syntax_uid:
        return "unknown (private or retired) transfer syntax"
    return name


@functools.cache
def supported_transfer_syntaxes() -> frozenset[str]:
    """The transfer syntax UIDs whose pixel data can be decoded with the installed codecs."""
    with_codec = {uid for uid in _CODEC_TRANSFER_SYNTAXES if get_decoder(uid).is_available}
    return NATIVE_TRANSFER_SYNTAXES | _FRAME_TRANSFER_SYNTAXES | frozenset(with_codec)


def is_encapsulated(transfer_syntax_uid: str) -> bool:
    """Whether pixel data in this syntax is encapsulated (stored as fragments per frame)."""
    return transfer_syntax_uid not in NATIVE_TRANSFER_SYNTAXES


def check_transfer_syntax(transfer_syntax_uid: str) -> None:
    """Raise unless pixel data in this transfer syntax can be decoded.

    Raises:
        UnsupportedTransferSyntaxError: Names the syntax (UID and name).
    """
    if transfer_syntax_uid not in supported_transfer_syntaxes():
        raise UnsupportedTransferSyntaxError(
            transfer_syntax_uid, transfer_syntax_name(transfer_syntax_uid)
        )


@dataclass(frozen=True)
class FrameTask:
    """One encapsulated frame to decode, small enough to send to a worker process.

    Attributes:
        transfer_syntax_uid: The syntax of ``data``.
        data: For codec syntaxes the encapsulated pixel data of this one frame (Basic Offset
            Table item and fragments); for the Supplement 244 syntaxes and 1-bit RLE, the
            frame's fragments joined.
        pixel: The Image Pixel description, in pydicom's decoding option names (``rows``,
            ``columns``, ``samples_per_pixel``, ``bits_allocated``, ``bits_stored``,
            ``pixel_representation``, ``photometric_interpretation``,
            ``planar_configuration``).
    """

    transfer_syntax_uid: str
    data: bytes
    pixel: Mapping[str, int | str]
    label: str = "frame"


def needs_joined_fragments(transfer_syntax_uid: str, bits_allocated: int) -> bool:
    """Whether :func:`decode_frame` wants the frame's fragments joined, not encapsulated."""
    return transfer_syntax_uid in _FRAME_TRANSFER_SYNTAXES or (
        transfer_syntax_uid == pydicom_uid.RLELossless and bits_allocated == 1
    )


def decode_frame(task: FrameTask) -> npt.NDArray[np.generic]:
    """Decode one frame: ``(rows, columns)`` or ``(rows, columns, samples)``.

    Runs in worker processes, so it takes and returns only picklable values.

    Raises:
        InvalidDicomError: The frame cannot be decoded (corrupt or inconsistent data).
    """
    pixel = task.pixel
    uid = task.transfer_syntax_uid
    try:
        if uid == DEFLATED_IMAGE_FRAME_COMPRESSION:
            return _native_frame(_inflate(task.data, _frame_bytes(pixel)), pixel)
        if uid == ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN:
            return _native_frame(task.data, pixel)
        if uid == pydicom_uid.RLELossless and pixel["bits_allocated"] == 1:
            return _native_frame(_rle_single_segment(task.data), pixel)
        return _codec_frame(task.data, uid, pixel)
    except InvalidDicomError:
        raise
    except Exception as exc:  # codecs raise many types (RuntimeError, ValueError, ...)
        raise InvalidDicomError(
            f"{task.label}: pixel data cannot be decoded as {transfer_syntax_name(uid)}: {exc}"
        ) from exc


def _codec_frame(data: bytes, uid: str, pixel: Mapping[str, int | str]) -> npt.NDArray[np.generic]:
    decoder = get_decoder(uid)
    options: dict[str, Any] = {
        **pixel,
        "number_of_frames": 1,
        "transfer_syntax_uid": pydicom_uid.UID(uid),
    }
    plugin = _PREFERRED_PLUGIN.get(uid, "")
    if plugin in decoder.available_plugins:
        try:
            array: npt.NDArray[np.generic] = decoder.as_array(
                data, decoding_plugin=plugin, **options
            )[0]
            return array
        except Exception as exc:  # codecs raise many types; pydicom's order is tried next
            logger.debug("%s plugin failed (%s); trying every plugin", plugin, exc)
    array = decoder.as_array(data, **options)[0]
    return array


def _frame_bytes(pixel: Mapping[str, int | str]) -> int:
    values = int(pixel["rows"]) * int(pixel["columns"]) * int(pixel["samples_per_pixel"])
    return math.ceil(values * int(pixel["bits_allocated"]) / 8)


def _inflate(data: bytes, expected_bytes: int) -> bytes:
    # Bounded, so a deflate bomb cannot allocate more than one frame.
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = inflater.decompress(data, expected_bytes + 1)
    if len(out) > expected_bytes:
        raise InvalidDicomError(f"deflated frame inflates to more than {expected_bytes} bytes")
    return out


def _rle_single_segment(data: bytes) -> bytes:
    header = np.frombuffer(data[:64], dtype="<u4")
    if len(header) != 16 or header[0] != 1:
        raise InvalidDicomError("1-bit RLE frame must hold exactly one segment")
    return bytes(decode_segment(data[int(header[1]) :]))


def _native_frame(data: bytes, pixel: Mapping[str, int | str]) -> npt.NDArray[np.generic]:
    rows, columns = int(pixel["rows"]), int(pixel["columns"])
    samples = int(pixel["samples_per_pixel"])
    bits_allocated = int(pixel["bits_allocated"])
    count = rows * columns * samples
    if len(data) < _frame_bytes(pixel):
        raise InvalidDicomError(
            f"frame holds {len(data)} of {_frame_bytes(pixel)} bytes (truncated?)"
        )
    flat: npt.NDArray[np.generic]
    if bits_allocated == 1:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        flat = bits[:count]
    elif bits_allocated in (8, 16, 32, 64):
        signed = int(pixel.get("pixel_representation", 0)) == 1
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
        flat = np.frombuffer(data, dtype=dtype, count=count)
    else:
        raise InvalidDicomError(f"Bits Allocated {bits_allocated} is not supported")
    if samples == 1:
        return flat.reshape(rows, columns)
    if int(pixel.get("planar_configuration", 0)) == 1:
        return flat.reshape(samples, rows, columns).transpose(1, 2, 0)
    return flat.reshape(rows, columns, samples)


# --- decoding instances ----------------------------------------------------------------------

_PIXEL_DATA = 0x7FE00010
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_POOLS: dict[int, ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def resolve_workers(workers: int | None) -> int:
    """``workers`` itself, or for ``None`` the number of CPUs this process may run on."""
    if workers is None:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers


def decode_instances(
    instances: Sequence[Dataset], *, workers: int | None = None
) -> list[npt.NDArray[np.generic]]:
    """See :func:`radserve.dicom_io.reading.instances.decode_pixel_arrays`."""
    syntaxes = [_checked_transfer_syntax(ds, k) for k, ds in enumerate(instances)]
    results: list[npt.NDArray[np.generic] | None] = [None] * len(instances)
    tasks: list[FrameTask] = []
    owners: list[tuple[int, int, bool]] = []  # instance, frame count, multi-frame shape
    for k, (ds, uid) in enumerate(zip(instances, syntaxes, strict=True)):
        if is_encapsulated(uid):
            frames = _frame_tasks(ds, uid, k)
            owners.append((k, len(frames), int(ds.get("NumberOfFrames", 1) or 1) > 1))
            tasks.extend(frames)
        else:
            results[k] = _native_array(ds, uid, k)
    decoded = iter(_run(tasks, resolve_workers(workers)))
    for k, count, multi_frame in owners:
        arrays = [next(decoded) for _ in range(count)]
        results[k] = np.stack(arrays) if multi_frame else arrays[0]
    return [array for array in results if array is not None]


def _checked_transfer_syntax(ds: Dataset, k: int) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    if not uid:
        raise InvalidDicomError(f"instance {k}: no Transfer Syntax UID, pixel data undecodable")
    check_transfer_syntax(uid)
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise InvalidDicomError(f"instance {k}: no pixel data")
    return uid


def _pixel_description(ds: Dataset, k: int) -> dict[str, int | str]:
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
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidDicomError(f"instance {k}: incomplete Image Pixel module ({exc})") from exc
    return pixel


def _frame_tasks(ds: Dataset, uid: str, k: int) -> list[FrameTask]:
    pixel = _pixel_description(ds, k)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    joined = needs_joined_fragments(uid, int(pixel["bits_allocated"]))
    data = ds.PixelData
    if frames == 1 and not joined:
        return [FrameTask(uid, data, pixel, f"instance {k}")]
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        parts = list(generate_frames(data, number_of_frames=frames, extended_offsets=extended))
    except Exception as exc:  # pydicom raises several types on broken encapsulation
        raise InvalidDicomError(f"instance {k}: broken encapsulated pixel data ({exc})") from exc
    if len(parts) != frames:
        raise InvalidDicomError(f"instance {k}: {len(parts)} of {frames} frames present")
    return [
        FrameTask(uid, part if joined else encapsulate([part]), pixel, f"instance {k} frame {i}")
        for i, part in enumerate(parts)
    ]


def _native_array(ds: Dataset, uid: str, k: int) -> npt.NDArray[np.generic]:
    view = _native_view(ds, uid)
    if view is not None:
        return view
    try:
        array: npt.NDArray[np.generic] = get_decoder(uid).as_array(ds)[0]
    except Exception as exc:  # pydicom raises many types on inconsistent pixel data
        raise InvalidDicomError(f"instance {k}: pixel data cannot be decoded ({exc})") from exc
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _native_view(ds: Dataset, uid: str) -> npt.NDArray[np.generic] | None:
    """Little endian, single-sample, byte-aligned pixel data as a view; else ``None``."""
    if uid == pydicom_uid.ExplicitVRBigEndian or "PixelData" not in ds:
        return None
    value = ds.get_item(_PIXEL_DATA).value
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None  # pydicom's decoder names what is missing
    count = rows * columns * frames
    if (
        not isinstance(value, bytes | bytearray)
        or samples != 1
        or bits_allocated not in (8, 16, 32)
        or len(value) < count * bits_allocated // 8
    ):
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    array = np.frombuffer(value, dtype=dtype, count=count)
    if bits_stored < bits_allocated:
        # Values outside the Bits Stored range mean garbage in the unused high bits (or
        # missing sign extension): leave those to pydicom, which masks them (a copy).
        low = -(1 << (bits_stored - 1)) if signed else 0
        high = (1 << (bits_stored - 1 if signed else bits_stored)) - 1
        if array.max() > high or (signed and array.min() < low):
            return None
    return array.reshape((rows, columns) if frames == 1 else (frames, rows, columns))


def _run(tasks: list[FrameTask], workers: int) -> list[npt.NDArray[np.generic]]:
    if workers <= 1 or len(tasks) < 2 or multiprocessing.current_process().daemon:
        return [decode_frame(task) for task in tasks]
    pool = _pool(workers)
    try:
        return list(pool.map(decode_frame, tasks, chunksize=max(1, len(tasks) // (4 * workers))))
    except BrokenProcessPool as exc:
        with _POOLS_LOCK:
            if _POOLS.get(workers) is pool:
                del _POOLS[workers]
        raise InvalidDicomError(
            "a pixel data decoder process died (corrupt compressed data?)"
        ) from exc


def _pool(workers: int) -> ProcessPoolExecutor:
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            method = (
                "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            )
            pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context(method), initializer=_warm_up
            )
            _POOLS[workers] = pool
        return pool


def _warm_up() -> None:
    """Import the codec plugins when a worker starts, not on its first frame."""
    supported_transfer_syntaxes()
