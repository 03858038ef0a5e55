"""Bearer-token authentication and role checks.

Tokens are configured by the SHA-256 of their value (:class:`TokenSettings`); a presented
token is hashed and compared with every configured hash by :func:`hmac.compare_digest`, so
neither the comparison nor the number of configured tokens tried leaks through timing.
Roles are explicit: ``admin`` does not imply ``read`` or ``submit``. Routes declare the role
they need with :func:`radserve.server.deps.require_role`. The development token
(``RADSERVE_DEV_TOKEN``) has every role. A browser presents a session cookie instead
(:mod:`radserve.server.session`), which stands for the token it was opened with.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from radserve.server.errors import AuthenticationError
from radserve.server.session import SessionSigner
from radserve.server.settings import Role, TokenSettings

logger = logging.getLogger(__name__)

DEV_TOKEN_NAME = "dev-token"


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's name and roles."""

    name: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class _Token:
    sha256: str
    principal: Principal


class Authenticator:
    """Checks bearer tokens against the configured token hashes.

    Args:
        tokens: The configured tokens.
        dev_token: The development token, if any (logged as not for production).
    """

    def __init__(self, tokens: Sequence[TokenSettings], dev_token: SecretStr | None) -> None:
        self._tokens = [_Token(t.sha256.lower(), Principal(t.name, t.roles)) for t in tokens]
        if dev_token is not None:
            digest = hashlib.sha256(dev_token.get_secret_value().encode()).hexdigest()
            self._tokens.append(_Token(digest, Principal(DEV_TOKEN_NAME, frozenset(Role))))
            logger.warning("RADSERVE_DEV_TOKEN is set: it grants every role; not for production")

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value.

        Raises:
            AuthenticationError: No bearer token, or not a configured one.
        """
        if not authorization:
            raise AuthenticationError("authentication required")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("authentication required (Bearer token)")
        return self._token_of(token).principal

    def open_session(self, token: str, signer: SessionSigner) -> tuple[Principal, str]:
        """Check a token (typed into the login form) and issue a session cookie value for it.

        Raises:
            AuthenticationError: Not a configured token.
        """
        found = self._token_of(token.strip())
        return found.principal, signer.issue(found.principal.name, found.sha256)

    def principal_of_session(self, cookie: str, signer: SessionSigner) -> Principal:
        """The principal of a session cookie, re-checked against the configured tokens.

        Raises:
            AuthenticationError: The cookie is invalid or expired, or its token is no longer
                configured with the same secret.
        """
        session = signer.verify(cookie)
        found: Principal | None = None
        for configured in self._tokens:  # no early exit: constant work
            fingerprint = signer.fingerprint(configured.sha256)
            if hmac.compare_digest(fingerprint, session.fingerprint) and (
                configured.principal.name == session.token_name
            ):
                found = configured.principal
        if found is None:
            raise AuthenticationError("session no longer valid: log in again", invalid_token=True)
        return found

    def _token_of(self, token: str) -> _Token:
        if not token:
            raise AuthenticationError("authentication required (Bearer token)")
        digest = hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()
        found: _Token | None = None
        for configured in self._tokens:  # no early exit: constant work
            if hmac.compare_digest(digest, configured.sha256):
                found = configured
        if found is None:
            raise AuthenticationError("invalid token", invalid_token=True)
        return found
