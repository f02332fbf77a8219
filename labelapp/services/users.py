"""Users and their roles."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from labelapp.roles import ROLES


def user_create_with_role(*, username: str, password: str, role: str | None) -> User:
    """Create or update a user with one role: ``admin``, ``expert``, or None (no role)."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    user.groups.clear()
    if role is not None:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user
