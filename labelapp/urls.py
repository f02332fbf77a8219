"""URL map. Each area keeps its own list of patterns in ``labelapp/views/<area>.py``'s module or
an ``*_urls.py`` file; add one line here per area."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from labelapp.views import datasets, imports, model_export
from labelapp.views import iterations as iteration_views
from labelapp.views import models as model_views


def favicon_view(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico on every page whatever the HTML says: point them at it."""
    return HttpResponseRedirect(static("favicon.ico"))


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dataset-list", permanent=False)),
    path("favicon.ico", favicon_view),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("datasets/", datasets.dataset_list_view, name="dataset-list"),
    path("datasets/import/", include(imports.urlpatterns)),
    path("datasets/<slug:name>/", datasets.dataset_detail_view, name="dataset-detail"),
    path("", include(iteration_views.urlpatterns)),
    path("", include(model_views.urlpatterns)),
    path("", include(model_export.urlpatterns)),
    path("", include("labelapp.views.model_rules")),
    path("", include("labelapp.views.labeling_urls")),
    path("api/", include("labelapp.api.urls")),
    path("", include("labelapp.views.similar")),
    path("", include("labelapp.views.label_audit")),
    path("", include("labelapp.views.seeds")),
    path("", include("labelapp.views.explorer")),
    path("", include("labelapp.views.checks")),
    path("", include("labelapp.views.case_map")),
]

# Errors outside the views: JSON under /api/, the usual pages elsewhere.
handler400 = "labelapp.api.errors.handler400"
handler403 = "labelapp.api.errors.handler403"
handler404 = "labelapp.api.errors.handler404"
handler500 = "labelapp.api.errors.handler500"
