"""Identity of the algorithm (model) that produced a result, written into every output object.

IHE AI Results (AIR) asks each result to identify its algorithm in the Contributing Equipment
Sequence; DICOM SEG additionally carries Segment Algorithm Identification.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import radserve

MANUFACTURER = "radserve"


@dataclass(frozen=True)
class AlgorithmIdentity:
    """The model that produced a result.

    Attributes:
        name: Model name (e.g. ``sts-ct-gtv``).
        version: Model version (e.g. ``1.0.0``).
        model_sha256: SHA-256 of the model file, hex.
        family: Algorithm family, free text (DICOM uses CID 7162; "Artificial Intelligence").
    """

    name: str
    version: str
    model_sha256: str
    family: str = "Artificial Intelligence"

    @property
    def software_versions(self) -> str:
        """The value written to Software Versions: radserve and model versions plus hash."""
        return (
            f"radserve {radserve.__version__}; {self.name} {self.version}; "
            f"sha256:{self.model_sha256[:16]}"
        )


def contributing_equipment(identity: AlgorithmIdentity) -> Sequence:
    """A Contributing Equipment Sequence naming radserve and the model (IHE AIR).

    Software Versions holds three values: the radserve version, the model name and version,
    and the model file's SHA-256 (hex).
    """
    item = Dataset()
    purpose = Dataset()
    purpose.CodeValue = "109103"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Modifying Equipment"
    item.PurposeOfReferenceCodeSequence = Sequence([purpose])
    item.Manufacturer = MANUFACTURER
    item.ManufacturerModelName = f"{identity.name} {identity.version}"[:64]
    item.SoftwareVersions = [
        f"radserve {radserve.__version__}"[:64],
        f"{identity.name} {identity.version}"[:64],
        # The full hex digest is exactly 64 characters, the limit of an LO value.
        identity.model_sha256[:64],
    ]
    return Sequence([item])
