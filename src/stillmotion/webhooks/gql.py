"""GraphQL: `webhookSecret`, `deliveries`; `rotateWebhookSecret`, `redeliverWebhook`,
`setAccountWebhookUrl`. Built from the same service functions and views as REST."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import strawberry
from starlette.concurrency import run_in_threadpool
from strawberry.scalars import JSON
from strawberry.types import Info

from stillmotion import errors
from stillmotion.accounts.service import get_account
from stillmotion.generations import service as generations
from stillmotion.webhooks import service
from stillmotion.webhooks.views import delivery_view, secret_view


@strawberry.type
class WebhookSecret:
    secret: str
    previous_secret_expires_at: str | None


@strawberry.type
class WebhookAttempt:
    attempted_at: str
    status_code: int | None
    error: str | None
    duration_ms: int


@strawberry.type
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="The `webhook-id` header of every attempt.")
    event: str
    generation_id: str | None
    url: str
    state: str = strawberry.field(description="pending, queued, delivered, failed or disabled")
    attempt_count: int
    next_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None
    payload: JSON | None
    attempts: list[WebhookAttempt]

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(d["id"]),
            event=d["event"],
            generation_id=d["generationId"],
            url=d["url"],
            state=d["state"],
            attempt_count=d["attemptCount"],
            next_attempt_at=d["nextAttemptAt"],
            last_status=d["lastStatus"],
            last_error=d["lastError"],
            created_at=d["createdAt"],
            delivered_at=d["deliveredAt"],
            payload=d["payload"],
            attempts=[
                WebhookAttempt(
                    attempted_at=a["attemptedAt"],
                    status_code=a["statusCode"],
                    error=a["error"],
                    duration_ms=a["durationMs"],
                )
                for a in d["attempts"]
            ],
        )


@strawberry.type
class AccountWebhook:
    url: str | None


def _secret(d: dict[str, Any]) -> WebhookSecret:
    return WebhookSecret(
        secret=d["secret"], previous_secret_expires_at=d["previousSecretExpiresAt"]
    )


@strawberry.type
class Query:
    @strawberry.field(description="The account's webhook signing secret (whsec_…).")
    def webhook_secret(self, info: Info) -> WebhookSecret:
        ctx, principal = info.context["ctx"], info.context["principal"]()
        with ctx.db.session() as session:
            return _secret(
                secret_view(get_account(session=session, account_id=principal.account_id))
            )

    @strawberry.field(
        description="Webhook deliveries with their attempts: one generation's, or the "
        "account's newest `first` when no generationId is given."
    )
    def deliveries(
        self, info: Info, generation_id: strawberry.ID | None = None, first: int = 50
    ) -> list[WebhookDelivery]:
        ctx, principal = info.context["ctx"], info.context["principal"]()
        with ctx.db.session() as session:
            if generation_id is not None:
                errors.check_text(str(generation_id), field="generationId")
                generations.get(
                    session=session, principal=principal, generation_id=str(generation_id)
                )
            logged = service.list_deliveries(
                session=session,
                principal=principal,
                generation_id=None if generation_id is None else str(generation_id),
                limit=first,
            )
            return [WebhookDelivery.from_api(delivery_view(r, a)) for r, a in logged]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="A new webhook secret; the previous one keeps signing for a grace period."
    )
    async def rotate_webhook_secret(self, info: Info) -> WebhookSecret:
        ctx, principal = info.context["ctx"], info.context["principal"]()
        grace = timedelta(hours=ctx.settings.webhook_secret_grace_hours)

        def run() -> WebhookSecret:  # a write transaction may wait for the lock: off the loop
            with ctx.db.session(write=True) as session:
                account = service.rotate_secret(
                    session=session, account_id=principal.account_id, grace=grace
                )
                return _secret(secret_view(account))

        return await run_in_threadpool(run)

    @strawberry.mutation(
        description="Queue a webhook delivery to be sent again now, with the same id; "
        "answers with it `queued` (the delivery loop sends it)."
    )
    async def redeliver_webhook(self, info: Info, id: strawberry.ID) -> WebhookDelivery:
        ctx, principal = info.context["ctx"], info.context["principal"]()

        def run() -> WebhookDelivery:  # a write transaction may wait for the lock: off the loop
            with ctx.db.session(write=True) as session:
                row, attempts = service.redeliver(
                    session=session, principal=principal, delivery_id=str(id)
                )
                return WebhookDelivery.from_api(delivery_view(row, attempts))

        return await run_in_threadpool(run)

    @strawberry.mutation(description="Set (or clear, with null) the account webhook URL.")
    async def set_account_webhook_url(self, info: Info, url: str | None) -> AccountWebhook:
        ctx, principal = info.context["ctx"], info.context["principal"]()

        def run() -> str | None:
            if url:
                service.check_webhook_url(url, settings=ctx.settings)
            with ctx.db.session(write=True) as session:
                account = service.set_account_webhook_url(
                    session=session, account_id=principal.account_id, url=url
                )
                return account.webhook_url

        return AccountWebhook(url=await run_in_threadpool(run))
