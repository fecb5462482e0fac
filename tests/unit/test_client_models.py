"""The SDK's typed results and error mapping, from API.md's sample JSON (no network)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from stillmotion.client import errors
from stillmotion.client.models import Account, Generation, GenerationMetadata, Upload

SAMPLE = {
    "id": "gen_2x9abc",
    "status": "processing",
    "type": "VIDEO",
    "provider": "runway-i2v",
    "service": "runway-i2v",
    "url": None,
    "posterUrl": None,
    "progress": 0.0,
    "stage": "queued",
    "queuePosition": 3,
    "creditCost": 25,
    "webhookUrl": "https://example.com/hook",
    "createdAt": "2026-11-24T01:02:03.456Z",
    "startedAt": None,
    "completedAt": None,
    "duration": 5,
    "metadata": {
        "duration": 5,
        "width": 1920,
        "height": 1080,
        "fps": 24,
        "frames": 120,
        "version": "gen-3",
        "aspectRatio": "16:9",
        "seed": 1234,
        "bytes": None,
    },
    "error": None,
}


def test_rest_shape_round_trips_every_field():
    gen = Generation.from_response({"data": {"imagevideo": copy.deepcopy(SAMPLE)}})
    assert gen.id == "gen_2x9abc"
    assert gen.queue_position == 3 and gen.credit_cost == 25 and gen.poster_url is None
    assert gen.created_at == datetime(2026, 11, 24, 1, 2, 3, 456000, tzinfo=UTC)
    assert gen.metadata == GenerationMetadata(
        duration=5,
        width=1920,
        height=1080,
        fps=24,
        frames=120,
        version="gen-3",
        aspect_ratio="16:9",
        seed=1234,
        bytes=None,
    )
    assert gen.error is None and not gen.done
    assert gen.unknown() == {}
    assert gen.to_dict() == SAMPLE


def test_graphql_shape_with_failure_and_unknown_fields():
    node = dict(SAMPLE, status="FAILED", error={"code": "RENDER_FAILED", "message": "boom"})
    node["somethingNew"] = {"x": 1}
    gen = Generation.from_response({"data": {"generate": node}})
    assert gen.status == "failed" and gen.done
    assert gen.error is not None and gen.error.code == "RENDER_FAILED"
    assert gen.unknown() == {"somethingNew": {"x": 1}}
    assert gen.raw["somethingNew"] == {"x": 1}
    assert gen.to_dict()["somethingNew"] == {"x": 1}


def test_seed_minimal_shape_and_frozen():
    gen = Generation.from_response(
        {
            "data": {
                "imagevideo": {
                    "id": "abc123xyz",
                    "status": "completed",
                    "url": "https://cdn.example/abc.mp4",
                    "duration": 5,
                    "createdAt": "2024-01-01T00:00:00Z",
                }
            }
        }
    )
    assert gen.url == "https://cdn.example/abc.mp4" and gen.metadata is None
    assert gen.to_dict()["createdAt"] == "2024-01-01T00:00:00Z"
    with pytest.raises(AttributeError):
        gen.status = "failed"  # type: ignore[misc]


def test_account_and_upload():
    acct = Account.from_response(
        {
            "data": {
                "account": {
                    "id": "acc_1",
                    "plan": "pro",
                    "creditBalance": 990,
                    "limits": {"perMinute": 60, "concurrent": 10, "daily": 10000},
                    "usage": {"generationsToday": 1},
                    "lowCreditThreshold": 100,
                    "webhookUrl": None,
                }
            }
        }
    )
    assert acct.credit_balance == 990 and acct.concurrency == 10
    upload = Upload.from_response(
        {
            "data": {
                "upload": {
                    "id": "upl_1",
                    "uri": "upload://upl_1",
                    "expiresAt": "2026-11-25T00:00:00Z",
                }
            }
        }
    )
    assert upload.uri == "upload://upl_1" and upload.expires_at.year == 2026


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "BAD_REQUEST", errors.BadRequest),
        (400, "VALIDATION_ERROR", errors.ValidationError),
        (400, "INVALID_IMAGE", errors.InvalidImage),
        (400, "IMAGE_FETCH_FAILED", errors.ImageFetchFailed),
        (400, "URL_NOT_ALLOWED", errors.UrlNotAllowed),
        (401, "UNAUTHENTICATED", errors.Unauthenticated),
        (402, "INSUFFICIENT_CREDITS", errors.InsufficientCredits),
        (403, "FORBIDDEN", errors.Forbidden),
        (404, "NOT_FOUND", errors.NotFound),
        (409, "IDEMPOTENCY_IN_PROGRESS", errors.IdempotencyInProgress),
        (409, "ALREADY_FINISHED", errors.AlreadyFinished),
        (413, "PAYLOAD_TOO_LARGE", errors.PayloadTooLarge),
        (422, "IDEMPOTENCY_KEY_REUSED", errors.IdempotencyKeyReused),
        (429, "RATE_LIMITED", errors.RateLimited),
        (429, "DAILY_LIMIT_EXCEEDED", errors.DailyLimitExceeded),
        (500, "INTERNAL_SERVER_ERROR", errors.ServerError),
        # Unknown codes fall back on the status.
        (404, "SOMETHING_ELSE", errors.NotFound),
        (502, None, errors.ServerError),
        (503, None, errors.ServiceUnavailable),
        (503, "STORAGE_FULL", errors.StorageFull),
        (405, "METHOD_NOT_ALLOWED", errors.MethodNotAllowed),
        (409, "CONFLICT", errors.Conflict),
        (418, None, errors.StillmotionError),
    ],
)
def test_error_codes_map_to_classes(status, code, cls):
    ext = {"code": code} if code else {}
    exc = errors.error_from_body({"errors": [{"message": "m", "extensions": ext}]}, status=status)
    assert type(exc) is cls
    assert exc.status == status and exc.message == "m"
    assert exc.code == (code or cls.default_code)


def test_error_details():
    credits = errors.error_from_body(
        {
            "errors": [
                {
                    "message": "Insufficient credits",
                    "extensions": {
                        "code": "INSUFFICIENT_CREDITS",
                        "creditsRequired": 100,
                        "creditsAvailable": 50,
                    },
                }
            ]
        },
        status=402,
    )
    assert (credits.required, credits.available) == (100, 50)
    field = errors.error_from_body(
        {
            "errors": [
                {"message": "bad", "extensions": {"code": "VALIDATION_ERROR", "field": "duration"}}
            ]
        },
        status=400,
    )
    assert field.field == "duration" and isinstance(field, errors.BadRequest)
    limited = errors.error_from_body(
        {"errors": [{"message": "slow", "extensions": {"code": "RATE_LIMITED", "retryAfter": 2}}]},
        status=429,
        headers={"Retry-After": "3"},
    )
    assert limited.retry_after == 3.0
    # GraphQL with HTTP 200 and no status at all still maps by code.
    gql = errors.error_from_body(
        {"data": None, "errors": [{"message": "x", "extensions": {"code": "NOT_FOUND"}}]}
    )
    assert isinstance(gql, errors.NotFound) and gql.status is None


def test_retry_after_http_date():
    assert errors.parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now=1445412480.0) == 5.0
    assert errors.parse_retry_after("2") == 2.0
    assert errors.parse_retry_after(None) is None
    assert errors.parse_retry_after("soon") is None
