"""REST: the webhook secret, the account webhook URL, the delivery log and redelivery."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict

from stillmotion.accounts import views as accounts_views
from stillmotion.accounts.service import get_account
from stillmotion.deps import ContextDep, CurrentPrincipal
from stillmotion.generations import service as generations
from stillmotion.webhooks import service
from stillmotion.webhooks.views import delivery_view, secret_view

router = APIRouter(tags=["webhooks"])

# A signing secret must not stay in a browser's or a proxy's cache.
NO_STORE = {"Cache-Control": "no-store"}


class AccountWebhook(BaseModel):
    """`{"url": "https://…"}` sets the account webhook URL, `{"url": null}` clears it."""

    model_config = ConfigDict(extra="forbid")
    url: str | None


@router.get("/v1/account/webhook_secret", summary="The account's webhook signing secret")
def read_secret(ctx: ContextDep, principal: CurrentPrincipal, response: Response) -> dict[str, Any]:
    response.headers.update(NO_STORE)
    with ctx.db.session() as session:
        account = get_account(session=session, account_id=principal.account_id)
        return {"data": {"webhookSecret": secret_view(account)}}


@router.post(
    "/v1/account/webhook_secret",
    summary="Rotate the webhook secret; the previous one keeps signing for a grace period",
)
def rotate_secret(
    ctx: ContextDep, principal: CurrentPrincipal, response: Response
) -> dict[str, Any]:
    response.headers.update(NO_STORE)
    grace = timedelta(hours=ctx.settings.webhook_secret_grace_hours)
    with ctx.db.session(write=True) as session:
        account = service.rotate_secret(
            session=session, account_id=principal.account_id, grace=grace
        )
        return {"data": {"webhookSecret": secret_view(account)}}


@router.put("/v1/account/webhook", summary="Set or clear the account webhook URL")
def set_account_webhook(
    body: AccountWebhook, ctx: ContextDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    if body.url:
        service.check_webhook_url(body.url, settings=ctx.settings)
    with ctx.db.session(write=True) as session:
        service.set_account_webhook_url(
            session=session, account_id=principal.account_id, url=body.url
        )
        view = accounts_views.account_view(
            session=session, ctx=ctx, account_id=principal.account_id
        )
    return {"data": {"account": view}}


@router.get(
    "/v1/image_to_video/{generation_id}/deliveries",
    summary="A generation's webhook deliveries, each with its attempts",
)
def list_deliveries(
    generation_id: str,
    ctx: ContextDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query()] = 50,
) -> dict[str, Any]:
    with ctx.db.session() as session:
        generations.get(session=session, principal=principal, generation_id=generation_id)
        logged = service.list_deliveries(
            session=session, principal=principal, generation_id=generation_id, limit=limit
        )
        return {"data": {"deliveries": [delivery_view(row, tries) for row, tries in logged]}}


@router.post(
    "/v1/image_to_video/{generation_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Queue a webhook to be sent again now (same webhook-id); answers with it queued",
)
def redeliver(
    generation_id: str, delivery_id: str, ctx: ContextDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    with ctx.db.session(write=True) as session:
        row, attempts = service.redeliver(
            session=session,
            principal=principal,
            delivery_id=delivery_id,
            generation_id=generation_id,
        )
        return {"data": {"delivery": delivery_view(row, attempts)}}
