"""Accept header negotiation for WADO-RS (PS3.18 8.7, RFC 9110 12.5.1).

A resource lists what it can send as :class:`Offer` values, in the server's order of
preference; :func:`negotiate` picks one against the Accept header:

* media ranges with wildcards (``*/*``, ``image/*``, ``multipart/*``) and ``q`` values; an
  offer takes the ``q`` of the most specific range that matches it, ``q=0`` refuses it;
  equal ``q`` values go to the earlier offer;
* for ``multipart/related`` the ``type`` parameter names the part media type (absent: the
  resource's default part type, the part type of the first offer) and ``transfer-syntax``
  the parts' transfer syntax: ``*`` any, a UID that one, absent the default syntax of that
  part type (PS3.18 Table 8.7.3-5; Explicit VR Little Endian for ``application/octet-stream``
  and ``application/dicom``);
* no Accept header, or a bare ``*/*``, means the first offer (the resource's default).

An offer without a transfer syntax (a representation not negotiated) matches any
``transfer-syntax`` parameter. When nothing matches, :class:`NotAcceptableError` names what
is offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from radserve.server.errors import MalformedRequestError, NotAcceptableError
from radserve.server.routes.multipart import MediaType, parse_media_type

MULTIPART = "multipart/related"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: PS3.18 Table 8.7.3-5: the transfer syntax a part type means without ``transfer-syntax``.
DEFAULT_TRANSFER_SYNTAX = {
    "application/dicom": EXPLICIT_VR_LITTLE_ENDIAN,
    "application/octet-stream": EXPLICIT_VR_LITTLE_ENDIAN,
    "image/jpeg": "1.2.840.10008.1.2.4.70",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "image/jxl": "1.2.840.10008.1.2.4.110",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
}


@dataclass(frozen=True)
class Offer:
    """One representation a resource can be sent in.

    Attributes:
        media_type: The response media type (``multipart/related``, ``image/png``, ...).
        part_type: For ``multipart/related``, the media type of its parts.
        transfer_syntax_uid: The parts' transfer syntax; ``None`` when it is not negotiated.
    """

    media_type: str
    part_type: str | None = None
    transfer_syntax_uid: str | None = None

    def describe(self) -> str:
        """The offer as an Accept media range."""
        if self.part_type is None:
            return self.media_type
        text = f'{self.media_type}; type="{self.part_type}"'
        if self.transfer_syntax_uid:
            text += f"; transfer-syntax={self.transfer_syntax_uid}"
        return text

    @property
    def part_content_type(self) -> str:
        """Content-Type of each part: the part type with its transfer syntax."""
        if self.part_type is None:
            raise ValueError("not a multipart offer")
        if self.transfer_syntax_uid is None:
            return self.part_type
        return f"{self.part_type}; transfer-syntax={self.transfer_syntax_uid}"


@dataclass(frozen=True)
class _Range:
    media_type: MediaType
    q: float


def _parse(accept: str) -> list[_Range]:
    ranges: list[_Range] = []
    for text in _split(accept):
        media_type = parse_media_type(text)
        q_text = media_type.parameters.get("q", "1")
        try:
            q = float(q_text)
        except ValueError as exc:
            raise MalformedRequestError(f"bad q value in Accept: {q_text!r}") from exc
        if not 0.0 <= q <= 1.0:
            raise MalformedRequestError(f"q value out of 0..1 in Accept: {q_text!r}")
        ranges.append(_Range(media_type, q))
    return ranges


def _split(accept: str) -> list[str]:
    """Media ranges, split at commas outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in accept:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _type_matches(pattern: str, media_type: str) -> int | None:
    """Specificity (0 ``*/*``, 1 ``type/*``, 2 exact) when ``pattern`` matches, else None."""
    if pattern == "*/*":
        return 0
    if pattern.endswith("/*"):
        return 1 if media_type.startswith(pattern[:-1]) else None
    return 2 if pattern == media_type else None


def _specificity(media_range: MediaType, offer: Offer, default_part_type: str) -> int | None:
    """How specifically ``media_range`` matches ``offer``; None when it does not."""
    main = _type_matches(media_range.type, offer.media_type)
    if main is None:
        return None
    if offer.part_type is None or main == 0:
        return main
    part_pattern = media_range.parameters.get("type", default_part_type).lower()
    part = _type_matches(part_pattern, offer.part_type)
    if part is None:
        return None
    syntax = media_range.parameters.get("transfer-syntax")
    if offer.transfer_syntax_uid is not None:
        if syntax is None:
            if DEFAULT_TRANSFER_SYNTAX.get(offer.part_type) != offer.transfer_syntax_uid:
                return None
        elif syntax != "*" and syntax != offer.transfer_syntax_uid:
            return None
    return main * 10 + part + (1 if syntax not in (None, "*") else 0)


def negotiate(
    accept: str | None, offers: Sequence[Offer], *, default: Offer | None = None
) -> Offer:
    """The offer to send for an Accept header.

    Args:
        accept: The Accept header.
        offers: What the resource can send, preferred first (ties go to the earlier one).
        default: What no Accept header or a bare ``*/*`` gets, and whose part type a
            ``multipart/related`` range without ``type`` means; the first offer when not
            given.

    Raises:
        NotAcceptableError: No offer is acceptable; the message lists the offers.
        MalformedRequestError: The Accept header cannot be parsed.
    """
    if not offers:
        raise NotAcceptableError("this resource cannot be sent in any media type")
    chosen_default = offers[0] if default is None else default
    if not accept or not accept.strip():
        return chosen_default
    ranges = _parse(accept)
    default_part_type = chosen_default.part_type or "application/octet-stream"
    best: tuple[float, int] | None = None
    for k, offer in enumerate(offers):
        matched: tuple[int, float] | None = None
        for media_range in ranges:
            if media_range.media_type.type == "*/*" and offer != chosen_default:
                continue  # a bare */* asks for the default representation
            specificity = _specificity(media_range.media_type, offer, default_part_type)
            if specificity is not None and (matched is None or specificity > matched[0]):
                matched = (specificity, media_range.q)
        if matched is not None and matched[1] > 0 and (best is None or matched[1] > best[0]):
            best = (matched[1], k)
    if best is None:
        offered = ", ".join(offer.describe() for offer in offers)
        raise NotAcceptableError(
            f"none of the accepted media types can be sent; offered: {offered}"
        )
    return offers[best[1]]
