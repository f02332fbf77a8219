"""DRF's throttles, reading their rates from the settings at request time.

DRF's own classes copy ``DEFAULT_THROTTLE_RATES`` once, at import; reading them per request lets
a deployment (and a test) change a rate through the settings alone.
"""

from __future__ import annotations

from rest_framework import throttling
from rest_framework.settings import api_settings


class _LiveRates:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonThrottle(_LiveRates, throttling.AnonRateThrottle):
    pass


class UserThrottle(_LiveRates, throttling.UserRateThrottle):
    pass


class ScopedThrottle(_LiveRates, throttling.ScopedRateThrottle):
    """Views name their ``throttle_scope`` (``import``, ``scoring``, ``download``, ``labels``)."""
