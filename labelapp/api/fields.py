"""Input fields and serializers that accept exactly what the OpenAPI schema says they do.

DRF is lenient in ways the schema cannot state: a boolean field takes ``0``, ``"yes"`` and
``"on"``, an empty query parameter counts as absent (as in an HTML form), a relation takes ``""``
for null. An API client reads the schema, so these take the schema's word.
"""

from __future__ import annotations

import math

from rest_framework import serializers

#: The largest id a database row can have (a 64-bit signed integer).
MAX_ID = 2**63 - 1


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` (JSON booleans) only."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class SettingField(serializers.ChoiceField):
    """One of a setting's choices (a string); ``true``/``false`` read as ``on``/``off`` where
    those are choices (the setting was a boolean before)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) and {"on", "off"} <= set(self.choices):
            data = "on" if data else "off"
        if isinstance(data, str):
            data = data.strip().lower()
        return super().to_internal_value(data)


class FiniteFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class QuerySerializer(serializers.Serializer):
    """Query parameters: a parameter given empty (``?ordering=``) is invalid, not absent."""

    def to_internal_value(self, data):
        if hasattr(data, "getlist"):
            blank = {
                name: ["This parameter may not be empty."]
                for name in self.fields
                if any(not str(value).strip() for value in data.getlist(name))
            }
            if blank:
                raise serializers.ValidationError(blank)
        return super().to_internal_value(data)
