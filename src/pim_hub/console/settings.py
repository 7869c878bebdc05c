"""Settings of the console, read from HUB_CONSOLE_* environment variables."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["viewer", "operator"]


class ConsoleUser(BaseModel):
    """One person who may sign in; `password_hash` comes from `hub console hash-password`."""

    name: str = Field(min_length=1, max_length=100)
    role: Role = "viewer"
    password_hash: SecretStr

    @field_validator("password_hash")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("scrypt$"):
            raise ValueError("password_hash must come from `hub console hash-password`")
        return value


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleSettings(BaseSettings):
    """Where the console listens, who may sign in, and how sessions are kept."""

    model_config = SettingsConfigDict(env_prefix="HUB_CONSOLE_", extra="ignore", frozen=True)

    # Operations console (`hub console`)
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8095, ge=0, le=65535, description="port to listen on")
    users: list[ConsoleUser] = Field(
        default_factory=list,
        description='JSON list of {"name", "role": viewer|operator, "password_hash"} (`hub console '
        "add-user` prints it); empty without OIDC: the console refuses to start",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="signs session cookies; set it so sessions survive a restart and are "
        "shared by replicas (unset: a random key per process)",
    )
    session_max_age_s: int = Field(default=8 * 3600, ge=60, description="sign-in lifetime")
    secure_cookies: bool | None = Field(
        default=None,
        description="send the session cookie over HTTPS only; unset: on unless listening on "
        "a loopback address (put TLS in front of a console reachable from elsewhere)",
    )
    sign_in_limit_per_address: int = Field(
        default=20,
        ge=1,
        description="failed sign-ins one client address may make within the window; more are "
        "answered 429 with Retry-After (and audited)",
    )
    sign_in_limit_per_user: int = Field(
        default=5, ge=1, description="failed sign-ins one user name may take within the window"
    )
    sign_in_window_s: float = Field(
        default=300.0, gt=0, description="the sliding window of the sign-in limits (seconds)"
    )
    refresh_s: float = Field(
        default=5.0,
        gt=0,
        description="the overview's broker and count figures are collected at most this often "
        "(in the background; pages show the last collection and its age)",
    )
    # OpenID Connect sign-in (beside or instead of the users list)
    oidc_issuer: str | None = Field(
        default=None, description="issuer URL (https); set with a client id to offer OIDC sign-in"
    )
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    oidc_redirect_url: str | None = Field(
        default=None,
        description="the console's callback URL as the provider knows it; unset: "
        "<the URL the console is reached at>/oidc/callback",
    )
    oidc_username_claim: str = Field(default="email", description="claim shown as the user")
    oidc_roles_claim: str = Field(default="groups", description="claim holding groups or roles")
    oidc_operator_values: list[str] = Field(
        default_factory=list, description="values of the roles claim that make an operator"
    )
    oidc_viewer_values: list[str] = Field(
        default_factory=list,
        description="values that make a viewer; empty: everyone the issuer signs in is a viewer",
    )
    dead_letter_limit: int = Field(
        default=500, ge=1, description="dead letters listed per group on the dead-letter page"
    )
    invalid_snapshot_limit: int = Field(
        default=200, ge=1, description="latest rejected snapshots shown"
    )

    @field_validator("secret_key")
    @classmethod
    def _usable_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # empty (an unset variable in a compose file): a random key
        if len(value.get_secret_value()) < 16:
            raise ValueError("secret_key must be at least 16 characters")
        return value

    @property
    def oidc_enabled(self) -> bool:
        """OIDC sign-in is offered."""
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def sign_in_configured(self) -> bool:
        """Someone can sign in: a users list, OIDC, or both. Without either nothing but the
        sign-in page (saying how to add a user) is served, and `hub console` refuses to start."""
        return bool(self.users) or self.oidc_enabled

    def cookies_secure(self) -> bool:
        """Whether the session cookie carries the Secure flag."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        return not is_loopback(self.host)
