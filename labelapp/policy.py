"""Who may do what: the one access policy behind the pages and the API.

Both ask the same two questions, the pages through :func:`requires` (a view decorator) and the
API through :class:`labelapp.api.permissions.PolicyPermission` (a DRF permission):

1. *May a user with these roles do this action at all?* :data:`RULES` gives, for every
   :class:`Action`, the roles that may do it. Pages send anonymous users to the login page, the
   API answers 401; an authenticated user without such a role gets 403 from both.
2. *May this user see this case?* Admins see every case; an expert the cases leased to them and
   the cases they answered (:func:`cases_visible_to`). Every page, fragment and endpoint that
   shows a case, or data about it, checks it: pages answer 403, the API 404 (it does not tell
   whether the case exists).
"""

from __future__ import annotations

from enum import StrEnum
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest

from labelapp.models import BatchItem, Case, Label, NoiseFlag
from labelapp.roles import ADMIN, EXPERT, has_role, is_admin


class Action(StrEnum):
    DATASET_VIEW = "dataset.view"
    DATASET_IMPORT = "dataset.import"  # upload, import status and the full import report
    CASE_VIEW = "case.view"  # and then only the cases of cases_visible_to
    LABEL = "label"  # take the next case, answer, undo one's own answer
    STATS_VIEW = "stats.view"  # admins: every expert's line; experts: their own
    REVIEW = "review"  # a second look sent to you (label-noise audit)
    ITERATION_VIEW = "iteration.view"
    ITERATION_RUN = "iteration.run"  # launch, cancel, retry
    MODEL_VIEW = "model.view"  # list, detail, compare
    MODEL_MANAGE = "model.manage"  # promote, roll back
    MODEL_DOWNLOAD = "model.download"
    MODEL_SCORE = "model.score"
    AUDIT = "audit"  # the label-noise audit, "more like this" batches
    PATTERN_MANAGE = "pattern.manage"
    SEEDS_MANAGE = "seeds.manage"  # mark, unmark and undo seed positives


_ADMINS = frozenset({ADMIN})
_EXPERTS_AND_ADMINS = frozenset({EXPERT, ADMIN})

#: Every action and the roles that may do it (admins may do everything).
RULES: dict[Action, frozenset[str]] = {
    Action.DATASET_VIEW: _EXPERTS_AND_ADMINS,
    Action.DATASET_IMPORT: _ADMINS,
    Action.CASE_VIEW: _EXPERTS_AND_ADMINS,
    Action.LABEL: _EXPERTS_AND_ADMINS,
    Action.STATS_VIEW: _EXPERTS_AND_ADMINS,
    Action.REVIEW: _EXPERTS_AND_ADMINS,
    Action.ITERATION_VIEW: _EXPERTS_AND_ADMINS,
    Action.ITERATION_RUN: _ADMINS,
    Action.MODEL_VIEW: _EXPERTS_AND_ADMINS,
    Action.MODEL_MANAGE: _ADMINS,
    Action.MODEL_DOWNLOAD: _ADMINS,
    Action.MODEL_SCORE: _ADMINS,
    Action.AUDIT: _ADMINS,
    Action.PATTERN_MANAGE: _ADMINS,
    Action.SEEDS_MANAGE: _ADMINS,
}


def allows(user: Any, action: Action) -> bool:
    """Whether ``user``'s roles allow ``action`` (never for anonymous users)."""
    return any(has_role(user, role) for role in RULES[action])


def refusal(action: Action) -> str:
    """The sentence a refused user reads (pages and API alike)."""
    roles = " or ".join(sorted(RULES[action], key=lambda r: r != EXPERT))
    return f"This needs the {roles} role."


def requires(action: Action):
    """Page view decorator: login required, then the roles of ``action`` (403 otherwise).

    The decorated view carries ``policy_action``, so a test can check that every page has one.
    """

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if not allows(request.user, action):
                raise PermissionDenied(refusal(action))
            return view(request, *args, **kwargs)

        wrapper.policy_action = action
        return wrapper

    return decorator


# --- cases -----------------------------------------------------------------------------------


def cases_visible_to(user: Any, cases: QuerySet[Case] | None = None) -> QuerySet[Case]:
    """Admins see every case; an expert the cases leased to them or that they labeled."""
    cases = Case.objects.all() if cases is None else cases
    if is_admin(user):
        return cases
    if allows(user, Action.CASE_VIEW):
        mine = Q(Exists(BatchItem.objects.filter(case=OuterRef("pk"), assigned_to=user))) | Q(
            Exists(Label.objects.filter(case=OuterRef("pk"), user=user))
        )
        return cases.filter(mine)
    return cases.none()


def may_see_case(user: Any, case: Case) -> bool:
    return cases_visible_to(user, Case.objects.filter(pk=case.pk)).exists()


def require_case(user: Any, case: Case) -> Case:
    """``case`` if ``user`` may see it, else :class:`PermissionDenied` (a 403 page)."""
    if not may_see_case(user, case):
        raise PermissionDenied("This case is not in your queue.")
    return case


def may_review(user: Any, flag: NoiseFlag) -> bool:
    """A second look is seen by the expert it was sent to (and by admins)."""
    return is_admin(user) or (flag.reviewer_id is not None and flag.reviewer_id == user.pk)
