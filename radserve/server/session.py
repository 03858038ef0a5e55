"""Browser sessions: a signed, HttpOnly cookie that stands for a bearer token.

A browser cannot attach a bearer token to the requests a web viewer makes, so
``POST /login`` checks a token once and answers with a session cookie. The cookie carries the
token's name, an expiry time and a fingerprint of the token's configured hash, signed with
HMAC-SHA256 under the session secret; it never carries the token or its hash. Every request
re-checks it against the configured tokens (:meth:`Authenticator.principal_of_session`), so a
token removed from, or replaced in, the configuration ends its sessions at once.

The secret comes from ``session_secret``; without one, each process draws a random secret at
start (sessions then end with a restart and do not carry across replicas).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from radserve.server.errors import AuthenticationError

SESSION_COOKIE = "radserve_session"
MAX_COOKIE_CHARS = 1024


@dataclass(frozen=True)
class Session:
    """What a valid session cookie says.

    Attributes:
        token_name: The name of the token the session was opened with.
        fingerprint: :meth:`SessionSigner.fingerprint` of that token's configured hash.
        expires_at: Unix time after which the session is no longer valid.
    """

    token_name: str
    fingerprint: str
    expires_at: float


class SessionSigner:
    """Issues and verifies session cookie values.

    Args:
        secret: The signing key (at least 32 bytes); ``None`` draws a random one.
        ttl_s: How long a session lasts.
    """

    def __init__(self, secret: bytes | None, *, ttl_s: float) -> None:
        self._key = secret if secret is not None else secrets.token_bytes(32)
        if len(self._key) < 32:
            raise ValueError("a session secret has at least 32 bytes")
        self.ttl_s = ttl_s

    def fingerprint(self, token_sha256: str) -> str:
        """A keyed fingerprint of a token's configured hash (not reversible to it)."""
        return hmac.new(self._key, b"fp:" + token_sha256.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, token_name: str, token_sha256: str, *, now: float | None = None) -> str:
        """A cookie value for a session of the token ``token_name``."""
        payload = {
            "n": token_name,
            "f": self.fingerprint(token_sha256),
            "e": int((time.time() if now is None else now) + self.ttl_s),
        }
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body.decode()}.{self._sign(body)}"

    def verify(self, value: str, *, now: float | None = None) -> Session:
        """The session of a cookie value.

        Raises:
            AuthenticationError: The value is malformed, not signed by this key, or expired.
        """
        body, _, signature = value.partition(".")
        if len(value) > MAX_COOKIE_CHARS or not body or not signature:
            raise AuthenticationError("invalid session", invalid_token=True)
        if not hmac.compare_digest(signature, self._sign(body.encode())):
            raise AuthenticationError("invalid session", invalid_token=True)
        try:
            payload = json.loads(base64.urlsafe_b64decode(body.encode()))
            session = Session(str(payload["n"]), str(payload["f"]), float(payload["e"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthenticationError("invalid session", invalid_token=True) from exc
        if session.expires_at < (time.time() if now is None else now):
            raise AuthenticationError("session expired: log in again", invalid_token=True)
        return session

    def _sign(self, body: bytes) -> str:
        return hmac.new(self._key, b"session:" + body, hashlib.sha256).hexdigest()
