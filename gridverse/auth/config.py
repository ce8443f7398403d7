"""The sign-in section (`auth:` in gridverse.yaml): where users live, session limits, lockout."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gridverse.configbase import Strict


class OidcConfig(Strict):
    """Sign-in through an identity provider with Streamlit's `st.login`. The provider's client id
    and secret go in `.streamlit/secrets.toml` (`[auth]`), as Streamlit requires, never here. The
    provider's user must also exist in the users file (its role comes from there)."""

    enabled: bool = False
    provider: str | None = Field(default=None, description="the [auth.<provider>] section name, or none for [auth]")


class AuthConfig(Strict):
    users_file: Path = Field(
        default=Path("var/users.yaml"),
        description="users, roles, Argon2id hashes, failed-attempt counters (runtime state, written 0600)",
    )
    idle_timeout_s: float = Field(default=900.0, gt=0, description="a session unused this long is ended")
    absolute_timeout_s: float = Field(default=28800.0, gt=0, description="a session ends this long after sign-in")
    max_failed: int = Field(default=5, ge=1, description="wrong passwords in a row that lock the account")
    lockout_s: float = Field(default=900.0, gt=0, description="how long a locked account stays locked")
    argon2_time_cost: int = Field(default=3, ge=1, description="Argon2id passes (RFC 9106 low-memory profile)")
    argon2_memory_kib: int = Field(default=65536, ge=8, description="Argon2id memory in KiB")
    argon2_parallelism: int = Field(default=4, ge=1, description="Argon2id lanes")
    oidc: OidcConfig = OidcConfig()
