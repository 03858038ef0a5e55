"""Errors of the HTTP layer (the request itself is wrong); statuses are mapped in app.py."""

from __future__ import annotations

from radserve.inference import InferenceError


class RequestError(InferenceError):
    """The HTTP request cannot be served as sent."""


class MalformedRequestError(RequestError):
    """The request is malformed (bad multipart body, bad parameter)."""


class AuthenticationError(RequestError):
    """No bearer token (``invalid_token`` false), or not a valid one (true)."""

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        self.invalid_token = invalid_token


class PermissionDeniedError(RequestError):
    """The token lacks the role the endpoint needs."""


class NotAcceptableError(RequestError):
    """None of the media types in the Accept header can be produced."""


class PayloadTooLargeError(RequestError):
    """The request body is larger than ``max_request_bytes``."""


class RequestTimeoutError(RequestError):
    """The request body stopped arriving for longer than ``body_idle_timeout_s``."""


class UnsupportedMediaTypeError(RequestError):
    """The request's Content-Type is not one the endpoint accepts."""


class ServiceBusyError(RequestError):
    """The server cannot take more work now; retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ViewerNotInstalledError(RequestError):
    """``/viewer`` was asked for, but no viewer is installed (``viewer_dir`` unset)."""


class ResourceNotFoundError(RequestError):
    """A part of an instance that it does not have (frames of a non-image, a bulk data tag)."""
