"""Sign-in for the console: scrypt password hashes, roles and CSRF tokens.

Passwords are never stored: the configuration holds `scrypt$N$r$p$salt$hash` strings made by
`hub console hash-password` (scrypt from the standard library: memory-hard, no dependency).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pim_hub.console.settings import ConsoleSettings, ConsoleUser, Role

#: scrypt cost: 2**14 x 8 x 1 uses 16 MiB and ~50 ms per check, the usual interactive setting.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: Length of the derived key: a hash of any other length is refused (a truncated one too).
DKLEN = 64
_MAXMEM = 64 * 2**20

#: What each role may do.
ACTIONS: dict[Role, frozenset[str]] = {
    "viewer": frozenset(),
    "operator": frozenset({"redrive", "replay", "resync", "enable", "disable"}),
}


@dataclass(frozen=True)
class Identity:
    """Who is signed in."""

    name: str
    role: Role

    def may(self, action: str) -> bool:
        """True when the role allows the action."""
        return action in ACTIONS[self.role]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A self-describing scrypt hash of a password, with a random salt."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=DKLEN
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when the password matches the hash; a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        if len(expected) != DKLEN:
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=DKLEN,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


#: Checked when the user name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(8), n=2**14)


def authenticate(settings: ConsoleSettings, name: str, password: str) -> Identity | None:
    """The identity of a user whose password matches, else None."""
    user: ConsoleUser | None = next((u for u in settings.users if u.name == name), None)
    encoded = user.password_hash.get_secret_value() if user else _DUMMY_HASH
    ok = verify_password(password, encoded)
    if user is None or not ok:
        return None
    return Identity(user.name, user.role)


def new_csrf_token() -> str:
    """A random token tied to one session."""
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token on either side never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
