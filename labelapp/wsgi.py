import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelapp.settings")
application = get_wsgi_application()

# Load every view now, then leave what start-up built out of the garbage collector's full
# passes: 220,000 long-lived objects (Django, pandas, scikit-learn) made each full pass take
# about 90 ms, a pause that landed on every few explorer pages (its p95 at 11.7M cases).
_views = get_resolver().url_patterns
gc.freeze()
