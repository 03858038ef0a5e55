"""Frames of an instance (PS3.18 10.4.1.1.3 Frame List, 8.7.3.3 bulk data media types).

``.../frames/1,3,5`` answers one ``multipart/related`` part per frame, in the order asked
(a frame asked twice is sent twice). The representation is chosen by
:func:`~radserve.server.routes.retrieve.pixels.choose_frame_offer`. Frame numbers count
from 1; a list holding anything else than numbers 1 to Number of Frames answers 400 naming
the offending entries.
"""

from __future__ import annotations

import re

from fastapi import Response

from radserve.server.errors import MalformedRequestError
from radserve.server.routes.retrieve.pixels import choose_frame_offer, image_layout, iter_frames
from radserve.server.routes.retrieve.responses import multipart_response
from radserve.server.store.batch import StoredInstance

MAX_LISTED = 10
_FRAME_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits (str.isdecimal takes any script's)


def parse_frame_list(text: str, number_of_frames: int) -> list[int]:
    """Frame numbers (from 1) of a frame list, as indices from 0.

    Raises:
        MalformedRequestError: An entry is not a number, or not 1 to ``number_of_frames``.
    """
    entries = text.split(",")
    garbage = [entry for entry in entries if not _FRAME_NUMBER.fullmatch(entry)]
    if garbage:
        shown = ", ".join(repr(e) for e in garbage[:MAX_LISTED])
        raise MalformedRequestError(f"frame list holds entries that are not frame numbers: {shown}")
    numbers = [int(entry) for entry in entries]
    wrong = [n for n in numbers if not 1 <= n <= number_of_frames]
    if wrong:
        shown = ", ".join(str(n) for n in wrong[:MAX_LISTED])
        raise MalformedRequestError(f"frame numbers out of range 1..{number_of_frames}: {shown}")
    return [n - 1 for n in numbers]


def frames_response(accept: str | None, instance: StoredInstance, frame_list: str) -> Response:
    """The frames of ``frame_list`` of an instance.

    Raises:
        ResourceNotFoundError: The instance has no Pixel Data.
        MalformedRequestError: A bad frame list.
        NotAcceptableError: The frames cannot be sent as the Accept header asks.
    """
    layout = image_layout(instance)
    indices = parse_frame_list(frame_list, layout.number_of_frames)
    offer = choose_frame_offer(accept, layout)
    content_type = offer.part_content_type
    frames = iter_frames(instance.path, layout, offer, indices)
    return multipart_response(str(offer.part_type), ((content_type, f) for f in frames))
