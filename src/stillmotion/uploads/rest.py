"""REST: `POST /v1/uploads` (multipart `file`) → an `upload://upl_…` id usable as `image`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from stillmotion import errors
from stillmotion.deps import ContextDep, CurrentPrincipal
from stillmotion.times import iso
from stillmotion.uploads import service

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post(
    "",
    status_code=201,
    summary="Upload a source image (multipart field `file`)",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
            "required": True,
        }
    },
)
async def upload(request: Request, ctx: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    limit = ctx.settings.max_image_bytes
    async with request.form(max_files=1, max_fields=5, max_part_size=limit + 1) as form:
        file = form.get("file")
        if file is None or isinstance(file, str):
            raise errors.ValidationFailed("a multipart field `file` is required", field="file")
        data = await file.read(limit + 1)
    if len(data) > limit:
        raise errors.PayloadTooLarge(f"the file is over {limit} bytes")

    def _create():
        row = service.create_upload(
            db=ctx.db,
            settings=ctx.settings,
            storage=ctx.storage,
            account_id=principal.account_id,
            data=data,
        )
        return {
            "id": row.id,
            "uri": f"upload://{row.id}",
            "expiresAt": iso(row.expires_at),
            "width": row.width,
            "height": row.height,
            "bytes": row.bytes,
        }

    return {"data": {"upload": await run_in_threadpool(_create)}}
