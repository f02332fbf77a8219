"""Tokens for integrators, and who the caller is."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.errors import error_responses
from labelapp.roles import ROLES, has_role


class TokenApi(ObtainAuthToken):
    """Exchange a username and password for the user's API token (``Authorization: Token ..``)."""

    throttle_scope = "auth"

    @extend_schema(
        operation_id="auth_token",
        responses={
            200: inline_serializer("Token", {"token": serializers.CharField()}),
            **error_responses(400, 429),
        },
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        roles = serializers.ListField(child=serializers.ChoiceField(choices=ROLES))

    @extend_schema(operation_id="me", responses={200: OutputSerializer, **error_responses(401)})
    def get(self, request: Request) -> Response:
        """The authenticated user and their roles (an empty list: the API lets them do nothing)."""
        user = request.user
        roles = [role for role in ROLES if has_role(user, role)]
        payload = {"id": user.pk, "username": user.get_username(), "roles": roles}
        return Response(self.OutputSerializer(payload).data)
