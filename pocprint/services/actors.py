"""Who is acting: a signed-in user, or the worker itself."""

from __future__ import annotations

from dataclasses import dataclass

from pocprint.domain.roles import Permission, Role, may
from pocprint.services.errors import Forbidden


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    full_name: str
    roles: frozenset[Role]
    # Signed in with a one-time password: nothing but the password change until it is replaced.
    must_change_password: bool = False

    def require(self, permission: Permission) -> None:
        if not may(self.roles, permission):
            raise Forbidden(f"{self.username} may not {permission.value.replace('_', ' ')}")


SYSTEM = Actor(user_id=None, username="system", full_name="pocprint worker", roles=frozenset())
