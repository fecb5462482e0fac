"""GraphQL: `account` (with its `ledger`)."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from stillmotion.accounts import views
from stillmotion.credits import service as credits


@strawberry.type
class LedgerEntry:
    id: strawberry.ID
    kind: str
    amount: int
    balance_after: int
    generation_id: str | None
    note: str | None
    created_at: str


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

    @strawberry.field(description="Credit changes, newest first; `before` is an entry id.")
    def ledger(self, info: Info, first: int = 50, before: int | None = None) -> list[LedgerEntry]:
        ctx = info.context["ctx"]
        with ctx.db.session() as session:
            entries, _ = credits.ledger_page(
                session=session, account_id=str(self.id), limit=first, before=before
            )
        return [
            LedgerEntry(
                id=strawberry.ID(str(e["id"])),
                kind=e["kind"],
                amount=e["amount"],
                balance_after=e["balanceAfter"],
                generation_id=e["generationId"],
                note=e["note"],
                created_at=e["createdAt"],
            )
            for e in entries
        ]


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
