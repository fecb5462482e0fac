"""REST: `GET /v1/account`, `GET /v1/account/ledger`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from stillmotion.accounts import views
from stillmotion.credits import service as credits
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


@router.get("/ledger", summary="The account's ledger, newest first (grant, topup, charge, …)")
def ledger(
    ctx: ContextDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(description="nextCursor of the previous page")] = None,
) -> dict[str, Any]:
    with ctx.db.session() as session:
        entries, cursor = credits.ledger_page(
            session=session, account_id=principal.account_id, limit=limit, before=before
        )
    return {"data": {"ledger": entries, "nextCursor": cursor}}
