"""Webhook signatures: the Standard Webhooks vector, round trips, and everything that must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from stillmotion.client.webhooks import (
    WebhookVerificationError,
    doitong_signature,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

BODY = json.dumps({"id": "gen_1", "status": "completed", "event": "generation.completed"}).encode()
NOW = 1_750_000_000


def headers_for(*secrets: str, body: bytes = BODY, timestamp: int = NOW) -> dict[str, str]:
    return signature_headers(secrets=list(secrets), msg_id="msg_1", timestamp=timestamp, body=body)


def test_standard_webhooks_vector() -> None:
    """The example from the Standard Webhooks specification's test suites."""
    signature = sign(
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_doitong_signature_is_hmac_of_the_raw_body() -> None:
    secret = generate_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, BODY, hashlib.sha256).hexdigest()
    assert doitong_signature(secret=secret, body=BODY) == f"sha256={expected}"


def test_generate_secret() -> None:
    secrets = {generate_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 32


def test_headers_and_round_trip() -> None:
    secret = generate_secret()
    headers = headers_for(secret)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(NOW)
    assert headers["webhook-signature"] == sign(
        secret=secret, msg_id="msg_1", timestamp=NOW, body=BODY
    )
    assert headers["X-Doitong-Signature"] == doitong_signature(secret=secret, body=BODY)
    assert verify(BODY, headers, secret, now=NOW) == json.loads(BODY)
    assert verify(BODY.decode(), headers, secret, now=NOW)["id"] == "gen_1"


def test_header_names_in_any_case() -> None:
    secret = generate_secret()
    shouting = {name.upper(): value for name, value in headers_for(secret).items()}
    assert verify(BODY, shouting, secret, now=NOW)["status"] == "completed"


@pytest.mark.parametrize("position", [0, len(BODY) // 2, len(BODY) - 1])
def test_a_changed_byte_is_rejected(position: int) -> None:
    secret = generate_secret()
    changed = bytearray(BODY)
    changed[position] ^= 0x01
    with pytest.raises(WebhookVerificationError):
        verify(bytes(changed), headers_for(secret), secret, now=NOW)


@pytest.mark.parametrize(
    ("name", "value"),
    [("webhook-id", "msg_2"), ("webhook-timestamp", str(NOW + 1))],
)
def test_a_changed_header_is_rejected(name: str, value: str) -> None:
    secret = generate_secret()
    headers = headers_for(secret) | {name: value}
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers, secret, now=NOW)


def test_a_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify(BODY, headers_for(generate_secret()), generate_secret(), now=NOW)


def test_timestamp_tolerance() -> None:
    secret = generate_secret()
    headers = headers_for(secret)
    assert verify(BODY, headers, secret, now=NOW + 300)
    assert verify(BODY, headers, secret, now=NOW - 300)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(BODY, headers, secret, now=NOW + 301)  # a replay 301 s later
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(BODY, headers, secret, now=NOW - 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(BODY, headers, secret, now=NOW + 61, tolerance=60)


def test_replay_uses_the_clock_by_default() -> None:
    secret = generate_secret()
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(BODY, headers_for(secret, timestamp=NOW), secret)  # NOW is in 2025


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_standard_headers_are_rejected(missing: str) -> None:
    secret = generate_secret()
    headers = headers_for(secret)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify(BODY, headers, secret, now=NOW)


def test_no_headers_at_all() -> None:
    with pytest.raises(WebhookVerificationError):
        verify(BODY, {}, generate_secret(), now=NOW)


def test_the_seed_header_alone() -> None:
    """Stripping the timestamped headers must not make a replay pass, unless asked for."""
    secret = generate_secret()
    seed_only = {"X-Doitong-Signature": headers_for(secret)["X-Doitong-Signature"]}
    with pytest.raises(WebhookVerificationError):
        verify(BODY, seed_only, secret, now=NOW)
    assert verify(BODY, seed_only, secret, require_timestamp=False)["id"] == "gen_1"
    with pytest.raises(WebhookVerificationError):
        verify(BODY + b" ", seed_only, secret, require_timestamp=False)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, seed_only, generate_secret(), require_timestamp=False)


def test_a_wrong_seed_header_is_rejected_even_with_a_good_standard_signature() -> None:
    secret = generate_secret()
    headers = headers_for(secret)
    headers["X-Doitong-Signature"] = doitong_signature(secret=generate_secret(), body=BODY)
    with pytest.raises(WebhookVerificationError, match="X-Doitong"):
        verify(BODY, headers, secret, now=NOW)


def test_rotation_signs_with_both_secrets() -> None:
    new, old = generate_secret(), generate_secret()
    headers = headers_for(new, old)
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2
    assert all(entry.startswith("v1,") for entry in entries)
    assert headers["X-Doitong-Signature"] == doitong_signature(secret=new, body=BODY)
    # A receiver that has not switched yet checks the Standard Webhooks entries only.
    without_seed = {k: v for k, v in headers.items() if k != "X-Doitong-Signature"}
    assert verify(BODY, without_seed, old, now=NOW)
    assert verify(BODY, headers, new, now=NOW)
    assert verify(BODY, headers, [generate_secret(), new], now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, without_seed, generate_secret(), now=NOW)


def test_unknown_entries_are_skipped() -> None:
    secret = generate_secret()
    headers = headers_for(secret)
    headers["webhook-signature"] = "v2,abc v1a,xyz " + headers["webhook-signature"]
    assert verify(BODY, headers, secret, now=NOW)


@pytest.mark.parametrize(
    ("name", "junk"),
    [
        ("webhook-signature", "v1,\u00e9t\u00e9"),
        ("webhook-signature", ""),
        ("webhook-timestamp", "soon"),
        ("X-Doitong-Signature", "sha256=\u00e9"),
        ("X-Doitong-Signature", "md5=abc"),
    ],
)
def test_junk_headers_fail_verification_cleanly(name: str, junk: str) -> None:
    secret = generate_secret()
    headers = headers_for(secret) | {name: junk}
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers, secret, now=NOW)


def test_a_body_that_is_not_json() -> None:
    secret = generate_secret()
    body = b"\xff not json"
    with pytest.raises(WebhookVerificationError, match="JSON"):
        verify(body, headers_for(secret, body=body), secret, now=NOW)
