"""Sign-in and roles (no Streamlit here): roles and permissions after IEC 62351-8 (`roles`), the
users file with Argon2id hashes and lockout (`users`), server-side sessions (`sessions`), and
the audited sign-in service the UI uses (`service`)."""

from gridverse.auth.config import AuthConfig
from gridverse.auth.roles import ROLE_PERMISSIONS, Permission, Role, User

__all__ = ["ROLE_PERMISSIONS", "AuthConfig", "Permission", "Role", "User"]
