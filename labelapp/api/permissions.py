"""The pages' roles, for the API: admins may do everything, experts read and label their cases.

Anonymous callers get 401 (token authentication answers with ``WWW-Authenticate: Token``);
authenticated users without the role get 403. Which cases an expert sees is a queryset filter
(:func:`labelapp.selectors.case_lists.cases_visible_to`), so a case outside their queue is a 404.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from labelapp.roles import is_admin, is_expert


class IsAdmin(BasePermission):
    message = "This needs the admin role."

    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)


class IsExpert(BasePermission):
    """Experts and admins (admins may label too)."""

    message = "This needs the expert or admin role."

    def has_permission(self, request, view) -> bool:
        return is_expert(request.user)
