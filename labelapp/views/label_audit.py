"""The label-noise audit page: flagged positives with reasons, second looks, expert agreement."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from labelapp.models import Dataset, Label, NoiseFlag
from labelapp.policy import Action, may_review, requires
from labelapp.roles import ADMIN, EXPERT
from labelapp.selectors.audit_noise import (
    expert_agreement,
    first_answers,
    noise_flags,
    reviews_for,
)
from labelapp.selectors.checks import answerers_with_recall
from labelapp.services.audit_noise import (
    ReviewError,
    noise_flag_dismiss,
    noise_flags_send_for_review,
    noise_review_answer,
)
from labelapp.services.labels import LabelError


def _experts():
    return (
        get_user_model()
        .objects.filter(groups__name__in=[EXPERT, ADMIN], is_active=True)
        .distinct()
        .order_by("username")
    )


@requires(Action.AUDIT)
def label_audit_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    status = request.GET.get("status") or ""
    flags = noise_flags(dataset, status=status or None)
    shown = list(flags[:500])
    answerers = answerers_with_recall(dataset, [flag.case_id for flag in shown])
    for flag in shown:
        flag.answerers = answerers.get(flag.case_id, [])
    return render(
        request,
        "labelapp/label_audit.html",
        {
            "dataset": dataset,
            "flags": shown,
            "n_flags": flags.count(),
            "status": status,
            "statuses": NoiseFlag.Status.choices,
            "agreement": expert_agreement(dataset),
            "experts": _experts(),
        },
    )


@requires(Action.AUDIT)
@require_POST
def label_audit_run_view(request: HttpRequest, name: str) -> HttpResponse:
    from labelapp.tasks.neighbors import noise_audit_task

    dataset = get_object_or_404(Dataset, name=name)
    user_id = request.user.pk
    transaction.on_commit(lambda: noise_audit_task.delay(dataset.pk, user_id))
    messages.info(request, "The audit runs on a worker; reload this page in a minute.")
    return redirect("label-audit", name=name)


@requires(Action.AUDIT)
@require_POST
def label_audit_send_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    ids = [int(i) for i in request.POST.getlist("flag") if i.isdigit()]
    flags = list(NoiseFlag.objects.filter(dataset=dataset, pk__in=ids))
    action = request.POST.get("action", "send")
    if action == "dismiss":
        for flag in flags:
            noise_flag_dismiss(user=request.user, flag=flag)
        messages.success(request, f"{len(flags)} flag(s) dismissed.")
        return redirect("label-audit", name=name)
    reviewer = _experts().filter(pk=request.POST.get("reviewer") or 0).first()
    if reviewer is None or not flags:
        messages.error(request, "Choose flags and the expert who takes the second look.")
        return redirect("label-audit", name=name)
    try:
        sent, skipped = noise_flags_send_for_review(
            user=request.user, flags=flags, reviewer=reviewer
        )
    except ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{sent} flag(s) sent to {reviewer} for a second look.")
        for reason in skipped:
            messages.warning(request, f"Not sent: {reason}.")
    return redirect("label-audit", name=name)


@requires(Action.REVIEW)
def review_list_view(request: HttpRequest) -> HttpResponse:
    return render(
        request, "labelapp/label_audit_reviews.html", {"flags": reviews_for(request.user)}
    )


@requires(Action.REVIEW)
def review_view(request: HttpRequest, pk: int) -> HttpResponse:
    flag = get_object_or_404(NoiseFlag.objects.select_related("case", "dataset"), pk=pk)
    if not may_review(request.user, flag):
        raise PermissionDenied("This second look was not sent to you.")
    if request.method == "POST":
        try:
            noise_review_answer(
                user=request.user,
                flag=flag,
                answer=request.POST.get("answer", ""),
                comment=request.POST.get("comment", ""),
            )
        except (ReviewError, LabelError) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Second look on {flag.case.case_id} recorded.")
            return redirect("label-audit-reviews")
    return render(
        request,
        "labelapp/label_audit_review.html",
        {"flag": flag, "first_answers": first_answers(flag), "answers": Label.Answer},
    )


urlpatterns = [
    path("datasets/<slug:name>/audit/", label_audit_view, name="label-audit"),
    path("datasets/<slug:name>/audit/run/", label_audit_run_view, name="label-audit-run"),
    path("datasets/<slug:name>/audit/send/", label_audit_send_view, name="label-audit-send"),
    path("audit/reviews/", review_list_view, name="label-audit-reviews"),
    path("audit/flags/<int:pk>/review/", review_view, name="label-audit-review"),
]
