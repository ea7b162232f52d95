"""Optional Coinbase CDP API-key authentication: a fresh JWT for every subscribe message.

Coinbase recommends authenticating even for public market data ("for the most reliable
connection"). The key name and private key come only from the environment
(``COINBASE_API_KEY``, ``COINBASE_API_SECRET``); the secret is held in a ``SecretStr``, is
masked in ``repr`` and is never logged. A WebSocket JWT has no ``uri`` claim and lives two
minutes, so one is built per subscribe, including every resubscribe after a reconnect
(docs/exchange-protocols.md).
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from dataclasses import dataclass

from pydantic import SecretStr

from tickflow.engine.errors import SourceError

KEY_ENV = "COINBASE_API_KEY"
SECRET_ENV = "COINBASE_API_SECRET"


@dataclass(frozen=True)
class CoinbaseCredentials:
    """A CDP API key: its name (``organizations/{org}/apiKeys/{id}``) and private key."""

    key_name: str
    secret: SecretStr

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> CoinbaseCredentials | None:
        """The credentials in the environment, or None when neither variable is set."""
        env = dict(os.environ) if env is None else env
        key, secret = env.get(KEY_ENV, ""), env.get(SECRET_ENV, "")
        if not key and not secret:
            return None
        if not key or not secret:
            missing = KEY_ENV if not key else SECRET_ENV
            msg = (f"coinbase: {missing} is not set (set both {KEY_ENV} and {SECRET_ENV}, "
                   f"or neither)")
            raise SourceError(msg)
        return cls(key, SecretStr(secret.replace("\\n", "\n")))

    def jwt(self, now: float | None = None) -> str:
        """A JWT for one WebSocket subscribe: ES256 for a PEM EC key, EdDSA for base64 Ed25519.

        Raises:
            SourceError: the secret is neither (the message never quotes it).
        """
        import jwt as pyjwt
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        issued = int(time.time() if now is None else now)
        claims = {"sub": self.key_name, "iss": "cdp", "nbf": issued, "exp": issued + 120}
        headers = {"kid": self.key_name, "nonce": secrets.token_hex(16), "typ": "JWT"}
        text = self.secret.get_secret_value().strip()
        try:
            if text.startswith("-----BEGIN"):
                key = load_pem_private_key(text.encode(), password=None)
                return pyjwt.encode(claims, key, algorithm="ES256", headers=headers)  # type: ignore[arg-type]
            raw = base64.b64decode(text, validate=True)
            ed_key = Ed25519PrivateKey.from_private_bytes(raw[:32])
            return pyjwt.encode(claims, ed_key, algorithm="EdDSA", headers=headers)
        except (ValueError, TypeError, pyjwt.PyJWTError):
            msg = (f"coinbase: {SECRET_ENV} is neither a PEM EC private key nor a base64 "
                   f"Ed25519 key")
            raise SourceError(msg) from None
