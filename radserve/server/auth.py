"""Bearer-token authentication and role checks.

Tokens are configured by the SHA-256 of their value (:class:`TokenSettings`); a presented
token is hashed and compared with every configured hash by :func:`hmac.compare_digest`, so
neither the comparison nor the number of configured tokens tried leaks through timing.
Roles are explicit: ``admin`` does not imply ``read`` or ``submit``. Routes declare the role
they need with :func:`radserve.server.deps.require_role`. The development token
(``RADSERVE_DEV_TOKEN``) has every role.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from radserve.server.errors import AuthenticationError
from radserve.server.settings import Role, TokenSettings

logger = logging.getLogger(__name__)

DEV_TOKEN_NAME = "dev-token"


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's name and roles."""

    name: str
    roles: frozenset[Role]


class Authenticator:
    """Checks bearer tokens against the configured token hashes.

    Args:
        tokens: The configured tokens.
        dev_token: The development token, if any (logged as not for production).
    """

    def __init__(self, tokens: Sequence[TokenSettings], dev_token: SecretStr | None) -> None:
        self._tokens = [(t.sha256, Principal(t.name, t.roles)) for t in tokens]
        if dev_token is not None:
            digest = hashlib.sha256(dev_token.get_secret_value().encode()).hexdigest()
            self._tokens.append((digest, Principal(DEV_TOKEN_NAME, frozenset(Role))))
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
        digest = hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()
        found: Principal | None = None
        for configured, principal in self._tokens:  # no early exit: constant work
            if hmac.compare_digest(digest, configured):
                found = principal
        if found is None:
            raise AuthenticationError("invalid token", invalid_token=True)
        return found
