"""Webhook signatures: signing (the server) and verification (your receiver), written once.

stillmotion signs every webhook two ways with the account secret `whsec_BASE64` (the key bytes
are the base64-decoded part after `whsec_`):

- the seed's `X-Doitong-Signature: sha256=HEX`, HEX = HMAC-SHA256(key, raw body);
- Standard Webhooks: `webhook-id`, `webhook-timestamp` (Unix seconds) and
  `webhook-signature: v1,BASE64` with HMAC-SHA256(key, f"{id}.{timestamp}.{body}"). During a
  secret rotation there is one space-separated `v1,…` entry per valid secret.

Only the second carries a timestamp, so only it can reject replays: `verify` requires it, and
checks the seed's header too when present.

A receiver, with the standard library only::

    from http.server import BaseHTTPRequestHandler, HTTPServer
    from stillmotion.client.webhooks import WebhookVerificationError, verify

    SECRET = "whsec_…"  # GET /v1/account/webhook_secret

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                event = verify(body, self.headers, SECRET)
            except WebhookVerificationError:
                self.send_response(400)
                self.end_headers()
                return
            print(event["event"], event["id"], event["url"])
            self.send_response(204)
            self.end_headers()

    HTTPServer(("", 8080), Receiver).serve_forever()

Answer 2xx quickly; anything else is retried with backoff, and `webhook-id` stays the same on
every retry, so use it to drop duplicates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "WebhookVerificationError",
    "doitong_signature",
    "generate_secret",
    "sign",
    "signature_headers",
    "verify",
]

PREFIX = "whsec_"


class WebhookVerificationError(Exception):
    """The webhook's signature or timestamp did not check out."""


def generate_secret() -> str:
    """A new secret: `whsec_` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    raw = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not a whsec_ base64 secret") from None


def _bytes(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else payload


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature entry `v1,BASE64` for one secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + _bytes(body)
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def doitong_signature(*, secret: str, body: bytes) -> str:
    """The seed's `X-Doitong-Signature` value, `sha256=HEX`."""
    return "sha256=" + hmac.new(_key(secret), _bytes(body), hashlib.sha256).hexdigest()


def signature_headers(
    *, secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every signature header for one delivery. `secrets[0]` is the current secret; the rest
    (a rotated-out secret in its grace period) add `v1` entries so receivers can switch late."""
    if not secrets:
        raise ValueError("at least one secret is needed")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(
            sign(secret=s, msg_id=msg_id, timestamp=int(timestamp), body=body) for s in secrets
        ),
        "X-Doitong-Signature": doitong_signature(secret=secrets[0], body=body),
    }


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: int = 300,
    now: float | None = None,
    require_timestamp: bool = True,
) -> dict[str, Any]:
    """Check a webhook and return its parsed JSON payload.

    `headers` is any mapping (looked up case-insensitively); `secret` one secret or several
    (while you rotate). The Standard Webhooks signature over `id.timestamp.body` must match and
    its timestamp be within `tolerance` seconds of now, which rejects replays; when the seed's
    `X-Doitong-Signature` is present it must match too. `require_timestamp=False` accepts a
    request that carries only the seed's header (it cannot detect replays).
    Raises `WebhookVerificationError` saying what failed.
    """
    body = _bytes(payload)
    lowered = {k.lower(): v for k, v in headers.items()}
    keys = [secret] if isinstance(secret, str) else list(secret)
    if not keys:
        raise WebhookVerificationError("no secret given")
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signature = lowered.get("webhook-signature")
    seed = lowered.get("x-doitong-signature")
    if msg_id and stamp and signature:
        _check_standard(body, msg_id, stamp, signature, keys, tolerance, now)
    elif require_timestamp:
        raise WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    elif not seed:
        raise WebhookVerificationError("no signature headers")
    if seed is not None and not any(
        _same(doitong_signature(secret=key, body=body), seed) for key in keys
    ):
        raise WebhookVerificationError("X-Doitong-Signature does not match")
    return _parse(body)


def _check_standard(body, msg_id, stamp, signature, keys, tolerance, now) -> None:
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("the timestamp is too old (a replay?)")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("the timestamp is too far in the future")
    offered = [part for part in signature.split(" ") if part.startswith("v1,")]
    for key in keys:
        expected = sign(secret=key, msg_id=msg_id, timestamp=timestamp, body=body)
        if any(_same(expected, o) for o in offered):
            return
    raise WebhookVerificationError("no webhook-signature entry matches")


def _same(expected: str, received: str) -> bool:
    """Constant-time comparison that also copes with non-ASCII junk in a header (as bytes:
    `hmac.compare_digest` raises TypeError on non-ASCII strings)."""
    return hmac.compare_digest(expected.encode(), received.encode("utf-8", "surrogatepass"))


def _parse(body: bytes) -> dict[str, Any]:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookVerificationError("the body is not JSON") from None
