"""Kite's order postbacks: `POST /accounts/kite/postback/`, authenticated by checksum only.

Thin: the work is in replication.postbacks.services.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from replication.postbacks.services import PostbackRefused, kite_postback_receive

logger = logging.getLogger(__name__)

POSTBACK_REFUSED = {"status": "error", "message": "postback refused"}


@method_decorator(csrf_exempt, name="dispatch")  # Kite posts here; the checksum authenticates it
class KitePostbackView(View):
    """Kite's order postback for child orders (raw JSON body)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            outcome = kite_postback_receive(body=request.body)
        except PostbackRefused as exc:
            # One answer for every refusal: telling "no such user" from "bad checksum" would let
            # anyone find out which Zerodha ids are linked here. The reason goes to the log only.
            logger.warning("postback refused: %s", exc)
            return JsonResponse(POSTBACK_REFUSED, status=400)
        logger.info(
            "postback for account %s order %s: %s", outcome.account_id, outcome.order_id, outcome.note
        )
        return JsonResponse({"status": "ok", "message": outcome.note})
