"""The app's last line of defence: an unexpected error is a §6 500 with nothing inside."""

from __future__ import annotations

import asyncio

import httpx

from stillmotion.app import create_app
from stillmotion.config import Settings
from stillmotion.migrations import upgrade


def test_unexpected_error_is_a_plain_500(tmp_path):
    settings = Settings(data_dir=tmp_path)
    upgrade(settings.resolved_database_url)
    app = create_app(settings, workers=0)

    @app.get("/boom")
    def boom():
        raise RuntimeError("SELECT secret FROM keys")

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get("/boom"), await client.get("/healthz")]

    boom_response, health = asyncio.run(run())
    assert boom_response.status_code == 500
    assert boom_response.json() == {
        "errors": [
            {
                "message": "Internal server error, please retry.",
                "extensions": {"code": "INTERNAL_SERVER_ERROR"},
            }
        ]
    }
    assert "SELECT" not in boom_response.text
    assert health.status_code == 200
