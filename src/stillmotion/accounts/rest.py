"""REST: `GET /v1/account`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stillmotion.accounts import views
from stillmotion.deps import ContextDep, CurrentPrincipal

router = APIRouter(prefix="/v1/account", tags=["account"])


@router.get("", summary="The calling key's account: plan, credits, limits, usage")
def read(ctx: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    with ctx.db.session() as session:
        return {
            "data": {
                "account": views.account_view(
                    session=session, ctx=ctx, account_id=principal.account_id
                )
            }
        }
