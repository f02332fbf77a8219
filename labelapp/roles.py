"""Roles: Django groups ``admin`` and ``expert``. Users in neither group see nothing.

What each role may do is :mod:`labelapp.policy`'s table, for the pages and the API alike.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

ADMIN = "admin"
EXPERT = "expert"
ROLES = (ADMIN, EXPERT)


def has_role(user: Any, role: str) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    cache = getattr(user, "_role_cache", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._role_cache = cache
    return role in cache


def is_admin(user: Any) -> bool:
    return has_role(user, ADMIN)


def is_expert(user: Any) -> bool:
    """Experts label; admins may label too."""
    return has_role(user, EXPERT) or has_role(user, ADMIN)


def role_context(request: HttpRequest) -> dict[str, bool]:
    user = getattr(request, "user", None)
    return {"is_admin": is_admin(user), "is_expert": is_expert(user)}
