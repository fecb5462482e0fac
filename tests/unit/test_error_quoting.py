"""What an error message may quote of a client's input: bounded, escaped, bindable."""

from __future__ import annotations

import pytest

from stillmotion import errors


def test_quote_keeps_a_short_value_as_repr():
    assert errors.quote("gen_123") == "'gen_123'"


def test_quote_cuts_a_long_value_and_says_how_long_it_was():
    quoted = errors.quote("g" * 8192)
    assert len(quoted) < errors.QUOTE_CHARS + 40
    assert quoted.startswith("'" + "g" * errors.QUOTE_CHARS + "'")
    assert "8192 characters" in quoted


@pytest.mark.parametrize("value", ["a\nb", "\x1b[31mred", "x\r\nSet-Cookie: y", "\udfff"])
def test_quote_escapes_control_characters_and_surrogates(value):
    quoted = errors.quote(value)
    assert not any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in quoted), quoted
    quoted.encode("utf-8")  # always encodable, so it can go into any body or log


def test_every_message_is_capped():
    err = errors.NotFound("no generation " + "x" * 50_000)
    assert len(err.message) == errors.MAX_MESSAGE
    assert len(err.as_graphql_error()["message"]) == errors.MAX_MESSAGE


@pytest.mark.parametrize("value", ["gen_1", "ünïcödé", "emoji 🎞", ""])
def test_check_text_passes_valid_text(value):
    assert errors.check_text(value, field="id") == value


@pytest.mark.parametrize("value", ["\udfff", "ok\ud800", "\udc00x"])
def test_check_text_refuses_a_lone_surrogate_naming_the_field(value):
    with pytest.raises(errors.ValidationFailed) as caught:
        errors.check_text(value, field="generationId")
    assert caught.value.status == 400
    assert caught.value.extensions["field"] == "generationId"
    caught.value.message.encode("utf-8")


def test_method_not_allowed_carries_allow():
    err = errors.MethodNotAllowed(allow="GET, POST")
    assert (err.status, err.code) == (405, "METHOD_NOT_ALLOWED")
    assert err.headers == {"Allow": "GET, POST"}
