"""Expert labeling pages: the queue, the case page, answers and undo (htmx swaps, keyboard-first).

The case page's workspace (``case_workspace.html``) is the unit htmx swaps: answering a case or
undoing one returns the next workspace, and the browser URL follows through ``HX-Push-Url``.
Without JavaScript the same forms post normally and redirect.
"""

from __future__ import annotations

import time
import uuid
from functools import wraps

from django.contrib import messages
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from labelapp.models import BatchItem, Case, Dataset, Label, PatternTag
from labelapp.policy import Action, cases_visible_to, requires
from labelapp.roles import is_admin
from labelapp.selectors import cases as case_selectors
from labelapp.selectors.checks import cases_shown_as_regular, labels_in_scope, labels_shown_with
from labelapp.selectors.labels import last_undoable_label, recent_answers
from labelapp.services.labels import LabelError, label_create, label_undo
from labelapp.services.queue import (
    batch_request_double_labeling,
    current_batch_iteration,
    earlier_batches_open,
    queue_lease_for_case,
    queue_next_case,
    queue_progress,
)

#: Time spent on a case longer than this is not "time per case" (the expert left the desk).
MAX_SECONDS_PER_CASE = 3600
#: How long an answer form's "this case was shown to you" note stays good.
SHOWN_TOKEN_MAX_AGE = 24 * 3600
SHOWN_SALT = "labelapp.case-shown"


def server_timing(view):
    """Report the view's own wall and CPU time (auth included) in a ``Server-Timing`` header.

    The CPU time (this thread's) does not count waiting for the database or for a busy CPU.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        start, cpu_start = time.perf_counter(), time.thread_time()
        response = view(request, *args, **kwargs)
        wall = (time.perf_counter() - start) * 1000
        cpu = (time.thread_time() - cpu_start) * 1000
        response["Server-Timing"] = f"app;dur={wall:.1f}, cpu;dur={cpu:.1f}"
        return response

    return wrapper


# --- access ----------------------------------------------------------------------------------


def _case_for(request: HttpRequest, pk: int) -> Case:
    """The case if the user may see it: admins always; experts when it is in their queue.

    "In their queue" means leased to them now, or answered by them before (their history).
    """
    case = get_object_or_404(
        Case.objects.select_related("dataset", "dataset__current_model"), pk=pk
    )
    if is_admin(request.user):
        return case
    now = timezone.now()
    leased = BatchItem.objects.filter(
        case=case, assigned_to=request.user, lease_expires_at__gt=now
    ).exists()
    if leased or Label.objects.filter(case=case, user=request.user).exists():
        return case
    # An open, free item of the current batch may be taken by opening its page.
    item = case_selectors.case_batch_item(case)
    if item is not None and item.status == BatchItem.Status.OPEN:
        if queue_lease_for_case(user=request.user, item=item):
            return case
    raise PermissionDenied("This case is not in your queue.")


# --- the queue -------------------------------------------------------------------------------


@server_timing
@requires(Action.LABEL)
def queue_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    iteration = current_batch_iteration(dataset)
    context = {
        "dataset": dataset,
        "iteration": iteration,
        "progress": queue_progress(dataset=dataset, user=request.user),
        "recent": recent_answers(user=request.user, dataset=dataset),
        "earlier_open": earlier_batches_open(dataset),
        "items": None,
        "now": timezone.now(),
    }
    if iteration is not None and is_admin(request.user):
        context["items"] = (
            BatchItem.objects.filter(iteration=iteration)
            .select_related("case", "assigned_to")
            .order_by("position")
        )
    return render(request, "labelapp/queue.html", context)


@server_timing
@requires(Action.LABEL)
def queue_next_view(request: HttpRequest, name: str) -> HttpResponse:
    """Lease the next case and show it (GET and POST: the queue's "Start" is a link)."""
    dataset = get_object_or_404(Dataset, name=name)
    item = queue_next_case(user=request.user, dataset=dataset)
    if request.htmx:
        return _render_workspace(request, dataset=dataset, case=_case_with_model(item), item=item)
    if item is None:
        messages.info(request, "No case is waiting in the current batch.")
        return redirect("queue", name=dataset.name)
    return redirect("case-detail", pk=item.case_id)


@requires(Action.ITERATION_RUN)
@require_POST
def double_labeling_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    iteration = current_batch_iteration(dataset)
    try:
        fraction = float(request.POST.get("percent", "0")) / 100.0
        if iteration is None:
            raise ValueError("there is no batch yet")
        n = batch_request_double_labeling(user=request.user, iteration=iteration, fraction=fraction)
    except ValueError as exc:
        messages.error(request, f"Double labeling not set: {exc}.")
    else:
        messages.success(request, f"{n} open cases of the batch now need two experts' answers.")
    return redirect("queue", name=dataset.name)


# --- the case page ---------------------------------------------------------------------------


@server_timing
@requires(Action.CASE_VIEW)
def case_view(request: HttpRequest, pk: int) -> HttpResponse:
    case = _case_for(request, pk)
    return _render_workspace(request, dataset=case.dataset, case=case, full_page=True)


def _workspace_context(
    request: HttpRequest, *, dataset: Dataset, case: Case | None, item: BatchItem | None = None
) -> dict:
    context = {
        "dataset": dataset,
        "case": case,
        "progress": queue_progress(dataset=dataset, user=request.user),
        "patterns": PatternTag.objects.order_by("name"),
        "undoable": last_undoable_label(user=request.user, dataset=dataset),
    }
    if case is None:
        return context
    if item is None or item.case_id != case.pk:
        item = case_selectors.case_batch_item(case)
    all_labels = case_selectors.case_labels(case)
    labels = labels_in_scope(all_labels, item)
    # A hidden check looks like any other case of the batch to an expert.
    cases_shown_as_regular(request.user, [case])
    my_answer = next(
        (
            lbl
            for lbl in labels
            if lbl.user_id == request.user.pk
            and lbl.answer != Label.Answer.UNDONE
            and not any(u.undoes_id == lbl.pk for u in labels)
        ),
        None,
    )
    undoable = context["undoable"]
    read_only = _read_only_reason(
        case, item, my_answer, undoable_here=bool(undoable and undoable.case_id == case.pk)
    )
    context.update(
        {
            "my_answer": my_answer,
            "read_only": read_only,
            # On a case the expert cannot answer, an undo button for some other case they
            # answered last is a trap: only this case's own answer may be undone from here.
            "undoable": undoable
            if not read_only or (undoable and undoable.case_id == case.pk)
            else None,
        }
    )
    context.update(
        {
            "item": item,
            "batch_size": (
                context["progress"]["total"]
                if item and item.iteration_id == context["progress"].get("iteration_id")
                else case_selectors.batch_size(item)
                if item
                else 0
            ),
            "score_rank": case_selectors.case_score_rank(case),
            "features": case_selectors.case_feature_rows(case),
            "timeline": case_selectors.case_timeline(case),
            "contributions": case_selectors.score_contributions(case),
            "labels": labels_shown_with(request.user, all_labels, item),
            "check_item_here": bool(item and item.is_check and is_admin(request.user)),
            "entity_labels": case_selectors.entity_labels(case),
            "idempotency_key": uuid.uuid4().hex,
            "shown_at": f"{time.time():.3f}",
            "shown_token": _shown_token(request.user, case),
        }
    )
    return context


def _read_only_reason(
    case: Case, item: BatchItem | None, my_answer: Label | None, *, undoable_here: bool
) -> str:
    """Why this case takes no answer from this user here ("" when it does)."""
    if my_answer is not None:
        how = (
            "press u to undo it and answer again"
            if undoable_here
            else "only your latest answer can be undone (within 2 hours)"
        )
        return (
            f"Not in your queue: you already answered case {case.case_id} "
            f"({my_answer.get_answer_display()}); {how}."
        )
    if item is not None and item.status == BatchItem.Status.ANSWERED:
        return f"Not in your queue: case {case.case_id} is already answered."
    return ""


def _render_workspace(
    request: HttpRequest,
    *,
    dataset: Dataset,
    case: Case | None,
    item: BatchItem | None = None,
    full_page: bool = False,
    notice: str = "",
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    context = _workspace_context(request, dataset=dataset, case=case, item=item)
    context.update({"notice": notice, "error": error})
    template = "labelapp/case.html" if full_page else "labelapp/case_workspace.html"
    response = render(request, template, context, status=status)
    if request.htmx and not full_page:
        url = (
            reverse("case-detail", args=[case.pk])
            if case
            else reverse("queue", args=[dataset.name])
        )
        # A refusal (409) keeps the URL; labeling.js swaps it in to show the message.
        if status < 400:
            response["HX-Push-Url"] = url
    return response


@server_timing
@requires(Action.LABEL)
@require_POST
def answer_view(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        case = _case_for(request, pk)
    except PermissionDenied:
        case = Case.objects.filter(pk=pk).select_related("dataset").first()
        if case is None or not _was_shown(request, case) or not case.batch_items.exists():
            raise
        # The reservation ran out and another expert holds (or answered) the case now.
        return _next_case_response(
            request,
            case.dataset,
            error=f"Your reservation of case {case.case_id} ran out and another expert took it; "
            "your answer was not stored.",
        )
    pattern = None
    if request.POST.get("pattern"):
        pattern = PatternTag.objects.filter(pk=request.POST["pattern"]).first()
    try:
        label_create(
            user=request.user,
            case=case,
            answer=request.POST.get("answer", ""),
            pattern=pattern,
            comment=request.POST.get("comment", ""),
            via=Label.Via.PAGE,
            idempotency_key=request.POST.get("idempotency_key") or None,
            seconds_spent=_seconds_since(request.POST.get("shown_at")),
        )
    except (LabelError, ValueError) as exc:
        if request.htmx:
            return _render_workspace(
                request, dataset=case.dataset, case=case, error=str(exc), status=409
            )
        return render(
            request,
            "labelapp/case.html",
            {**_workspace_context(request, dataset=case.dataset, case=case), "error": str(exc)},
            status=409,
        )
    return _next_case_response(request, case.dataset)


def _next_case_response(
    request: HttpRequest, dataset: Dataset, notice: str = "", error: str = ""
) -> HttpResponse:
    item = queue_next_case(user=request.user, dataset=dataset)
    if not request.htmx:
        if notice:
            messages.info(request, notice)
        if error:
            messages.error(request, error)
        if item is None:
            messages.success(request, "The batch is done: no case is waiting for you.")
            return redirect("queue", name=dataset.name)
        return redirect("case-detail", pk=item.case_id)
    return _render_workspace(
        request, dataset=dataset, case=_case_with_model(item), item=item, notice=notice, error=error
    )


def _case_with_model(item: BatchItem | None) -> Case | None:
    """The item's case (``queue_next_case`` reads it with its dataset and model)."""
    return item.case if item is not None else None


def _shown_token(user, case: Case) -> str:
    """A signed note, put in the answer form, that this case's page was shown to this user."""
    return signing.dumps([case.pk, user.pk], salt=SHOWN_SALT, compress=True)


def _was_shown(request: HttpRequest, case: Case) -> bool:
    """Whether the answer comes from a page of this case that was shown to this user.

    Only then may a refused answer say that the reservation ran out (anyone else gets 403 and
    learns nothing about the case).
    """
    try:
        shown = signing.loads(
            request.POST.get("shown_token", ""), salt=SHOWN_SALT, max_age=SHOWN_TOKEN_MAX_AGE
        )
    except signing.BadSignature:
        return False
    return shown == [case.pk, request.user.pk]


def _seconds_since(shown_at: str | None) -> float | None:
    try:
        seconds = time.time() - float(shown_at or "")
    except ValueError:
        return None
    return round(seconds, 2) if 0 <= seconds <= MAX_SECONDS_PER_CASE else None


@server_timing
@requires(Action.LABEL)
@require_POST
def undo_last_view(request: HttpRequest, name: str) -> HttpResponse:
    """Undo the user's newest answer on the dataset and bring that case back to them."""
    dataset = get_object_or_404(Dataset, name=name)
    label = last_undoable_label(user=request.user, dataset=dataset)
    if label is None:
        error = "Nothing to undo: you have no recent answer on this dataset."
        if request.htmx:
            current = request.POST.get("case", "")
            case = None
            if current.isdigit():  # the case the page shows, if it is the user's to see
                mine = cases_visible_to(request.user, dataset.cases.filter(pk=int(current)))
                case = mine.select_related("dataset", "dataset__current_model").first()
            return _render_workspace(request, dataset=dataset, case=case, error=error)
        messages.warning(request, error)
        return redirect("queue", name=dataset.name)
    try:
        label_undo(user=request.user, label=label, via=Label.Via.PAGE)
    except LabelError as exc:
        messages.error(request, str(exc))
        return redirect("queue", name=dataset.name)
    notice = (
        f"Undid your answer “{label.get_answer_display()}” on case {label.case.case_id}. "
        "Answer it again."
    )
    if not request.htmx:
        messages.info(request, notice)
        return redirect("case-detail", pk=label.case_id)
    case = Case.objects.select_related("dataset", "dataset__current_model").get(pk=label.case_id)
    return _render_workspace(request, dataset=dataset, case=case, notice=notice)
