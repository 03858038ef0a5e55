"""The DICOM JSON of recently retrieved instances, kept in memory within a byte budget.

Converting a CT header to DICOM JSON costs milliseconds (pydicom's conversion of every
element): for a viewer opening a 300-slice series, most of its wait for the first image.
A stored instance never changes under its SOP Instance UID and SHA-256, so its JSON text is
kept, least recently used first out, with a placeholder where the DICOMweb root goes (that
root depends on the request).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from radserve.server.store.batch import StoredInstance

# What a cached text holds where each BulkDataURI's DICOMweb root goes.
ROOT_PLACEHOLDER = "radserve-dicomweb-root:"
DEFAULT_MAX_BYTES = 64 * 1024**2


class MetadataCache:
    """Thread-safe LRU of instance metadata texts, at most ``max_bytes`` of them in all."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def text(self, instance: StoredInstance, build: Callable[[], str]) -> str:
        """The cached text of ``instance``, built (outside the lock) and kept on a miss."""
        key = (instance.sop_instance_uid, instance.sha256)
        with self._lock:
            found = self._texts.get(key)
            if found is not None:
                self._texts.move_to_end(key)
                return found
        text = build()
        size = len(text)
        if size > self.max_bytes:
            return text
        with self._lock:
            if key not in self._texts:
                self._texts[key] = text
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, dropped = self._texts.popitem(last=False)
                    self._bytes -= len(dropped)
        return text

    @property
    def size_bytes(self) -> int:
        """The characters held now (a bound on the memory the texts take, ASCII mostly)."""
        return self._bytes
