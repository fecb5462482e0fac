"""REST: `GET /v1/services`, the catalogue with each service's availability."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stillmotion.deps import ContextDep, CurrentPrincipal
from stillmotion.services.views import services_view

router = APIRouter(prefix="/v1/services", tags=["services"])


@router.get("", summary="The services offered: what each takes, what it costs, whether it is up")
def list_(ctx: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return {"data": {"services": services_view(ctx.providers)}}
