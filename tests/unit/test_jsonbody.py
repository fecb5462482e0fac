"""The safe JSON loader: depth and integer limits refused as BadRequest, measured on bytes."""

from __future__ import annotations

import json
import sys

import pytest

from stillmotion import errors, jsonbody

LIMIT = jsonbody.MAX_DEPTH


def nested(n: int, open_: str = "[", close: str = "]") -> str:
    return open_ * n + close * n


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ('"[[[["', 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["]]]]", [[[]]]]', 4),  # closing brackets in a string do not hide depth
        ('["\\"[[[", []]', 2),  # nor does an escaped quote end the string early
        (nested(1000), 1000),
    ],
)
def test_depth_counts_brackets_outside_strings(text, expected):
    assert jsonbody.depth(text.encode()) == expected


def test_depth_at_the_limit_is_accepted():
    assert jsonbody.loads(nested(LIMIT)) == json.loads(nested(LIMIT))


@pytest.mark.parametrize(
    "text",
    [
        nested(LIMIT + 1),
        '{"a":' * (LIMIT + 1) + "0" + "}" * (LIMIT + 1),
        '["]]]]]]]]", ' + nested(LIMIT + 1) + "]",
        nested(100_000),
    ],
)
def test_too_deep_is_bad_request(text):
    with pytest.raises(errors.BadRequest, match="nested too deep"):
        jsonbody.loads(text.encode())


def test_many_brackets_in_strings_are_not_depth():
    body = json.dumps({"prompt": "[" * 5000, "list": [[1]] * 3000})
    assert jsonbody.loads(body.encode())["prompt"] == "[" * 5000


def test_huge_integer_is_bad_request():
    digits = sys.get_int_max_str_digits()
    assert jsonbody.loads("[" + "9" * digits + "]") == [int("9" * digits)]
    with pytest.raises(errors.BadRequest, match="digits") as caught:
        jsonbody.loads(b'{"a": ' + b"9" * (digits + 1) + b"}")
    assert caught.value.status == 400 and caught.value.code == "BAD_REQUEST"


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe\x00", b"", b"[1,]"])
def test_malformed_is_bad_request(raw):
    with pytest.raises(errors.BadRequest, match="not valid JSON"):
        jsonbody.loads(raw)


def test_what_names_the_part():
    with pytest.raises(errors.BadRequest, match=r"^variables is nested"):
        jsonbody.loads(nested(LIMIT + 5), what="variables")


def test_lone_surrogate_escape_parses_as_json_does():
    # Refusing it is the job of whatever uses the string (ids: errors.check_text).
    assert jsonbody.loads(b'{"id": "\\udfff"}') == {"id": "\udfff"}


def test_millions_of_tiny_values_are_refused_before_parsing():
    import time

    body = b"[" + b"[]," * 2_000_000 + b"[]]"  # 6 MB, 2 million empty arrays
    started = time.perf_counter()
    with pytest.raises(errors.BadRequest, match="JSON values"):
        jsonbody.loads(body)
    refused_in = time.perf_counter() - started
    started = time.perf_counter()
    json.loads(body)
    parsed_in = time.perf_counter() - started
    assert refused_in < parsed_in / 2, (refused_in, parsed_in)


def test_a_long_string_is_one_value_and_commas_inside_strings_do_not_count():
    body = json.dumps({"image": "data:image/png;base64," + "A," * 1_000_000}).encode()
    assert jsonbody.loads(body)["image"].startswith("data:image/png")
    assert jsonbody.loads(b"[" + b"1," * 99_000 + b"1]")[-1] == 1
