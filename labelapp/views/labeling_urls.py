"""URLs of the labeling area: queue, case page, answers, undo, expert stats, pattern taxonomy."""

from django.urls import path

from labelapp.views import experts, labeling

urlpatterns = [
    path("datasets/<slug:name>/queue/", labeling.queue_view, name="queue"),
    path("datasets/<slug:name>/queue/next/", labeling.queue_next_view, name="queue-next"),
    path("datasets/<slug:name>/queue/undo/", labeling.undo_last_view, name="queue-undo"),
    path(
        "datasets/<slug:name>/queue/double/",
        labeling.double_labeling_view,
        name="queue-double-labeling",
    ),
    path("cases/<int:pk>/", labeling.case_view, name="case-detail"),
    path("cases/<int:pk>/answer/", labeling.answer_view, name="case-answer"),
    # The similar-cases panel (issue 8) adds "cases/<int:pk>/similar/" in its own area.
    path("experts/stats/", experts.expert_stats_view, name="expert-stats"),
    path("patterns/", experts.pattern_list_view, name="pattern-list"),
    path("patterns/<int:pk>/", experts.pattern_edit_view, name="pattern-edit"),
    path("patterns/<int:pk>/delete/", experts.pattern_delete_view, name="pattern-delete"),
]
