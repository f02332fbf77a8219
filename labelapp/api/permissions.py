"""The API's side of :mod:`labelapp.policy`: the pages' rules, read from the same table.

Every API view names its action per HTTP method (``policy_actions = {"GET": Action.X, ...}``);
:class:`PolicyPermission` checks it. Anonymous callers get 401 (token authentication answers with
``WWW-Authenticate: Token``); authenticated users without the role get 403. Which cases an expert
sees is a queryset filter (:func:`labelapp.policy.cases_visible_to`), so a case outside their
queue is a 404.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from labelapp.policy import Action, allows, refusal

#: Methods that read: they need the action of GET.
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def view_action(view, method: str) -> Action:
    """The action ``view`` declares for ``method`` (a read method falls back on GET's)."""
    actions = view.policy_actions
    if method in actions:
        return actions[method]
    if method in READ_METHODS and "GET" in actions:
        return actions["GET"]
    # A method the view lacks is answered 405 once permitted; ask for its first action meanwhile.
    return next(iter(actions.values()))


class PolicyPermission(BasePermission):
    message = "This is not allowed."

    def has_permission(self, request, view) -> bool:
        action = view_action(view, request.method)
        if allows(request.user, action):
            return True
        self.message = refusal(action)
        return False
