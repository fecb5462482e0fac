"""GraphQL: `account`."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from stillmotion.accounts import views


@strawberry.type
class Account:
    id: strawberry.ID
    name: str
    plan: str
    credit_balance: int
    limits: JSON
    usage: JSON
    low_credit_threshold: int
    webhook_url: str | None


@strawberry.type
class Query:
    @strawberry.field(description="The calling key's account.")
    def account(self, info: Info) -> Account:
        ctx, principal = info.context["ctx"], info.context["principal"]()
        with ctx.db.session() as session:
            d = views.account_view(session=session, ctx=ctx, account_id=principal.account_id)
        return Account(
            id=strawberry.ID(d["id"]),
            name=d["name"],
            plan=d["plan"],
            credit_balance=d["creditBalance"],
            limits=d["limits"],
            usage=d["usage"],
            low_credit_threshold=d["lowCreditThreshold"],
            webhook_url=d["webhookUrl"],
        )
