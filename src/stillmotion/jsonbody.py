"""The one way a request body becomes JSON (REST creates, GraphQL, idempotency fingerprints).

`json.loads` alone lets a client reach two limits of Python from a small body: nesting ~1,000
deep parses, then overflows the stack of whatever walks it next (pydantic, graphql-core,
`json.dumps`), and an integer of more than 4,300 digits raises a bare `ValueError` (Python's
`int_max_str_digits`). `loads` refuses both with `BadRequest`, as it does malformed JSON.

The depth is measured on the bytes before parsing: strings are blanked with one regex, then
the running count of `[{` less `]}` is taken with numpy, so a bracket-rich 8 MiB body costs
tens of milliseconds and an ordinary one (fewer brackets than the limit) nothing.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import numpy as np

from stillmotion import errors

MAX_DEPTH = 64
"""Arrays and objects nested deeper than this are refused (the API's own bodies need ~6)."""
MAX_VALUES = 100_000
"""Bodies with more values than this (counted as `,` `[` `{` outside strings) are refused:
`json.loads` holds the GIL while it parses, so millions of tiny values (8 MB of `[]` takes
half a second) would stall every thread and the event loop. The API's own bodies hold at most
a few thousand (motion-brush polygons); a data URI is one value however long."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STEP = np.zeros(256, dtype=np.int8)
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def depth(raw: bytes) -> int:
    """How deep arrays and objects nest in the JSON text `raw` (0 for a scalar)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    steps = _STEP[np.frombuffer(brackets, dtype=np.uint8)]
    return max(0, int(np.cumsum(steps, dtype=np.int64).max()))


def _values(raw: bytes) -> int:
    """How many values the JSON text `raw` separates or opens (`,` `[` `{` outside strings)."""
    outside = _STRING.sub(b"", raw)
    return outside.count(b",") + outside.count(b"[") + outside.count(b"{")


def loads(raw: bytes | str, *, what: str = "the request body") -> Any:
    """Parse `raw` as JSON, or raise `errors.BadRequest` saying why it is refused."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    # Depth can only exceed the limit when there are more opening brackets than the limit,
    # and the values can only exceed theirs when there are that many separators: the common
    # body skips both scans.
    opening = data.count(b"[") + data.count(b"{")
    if opening > MAX_DEPTH and depth(data) > MAX_DEPTH:
        raise errors.BadRequest(f"{what} is nested too deep (more than {MAX_DEPTH} levels)")
    if opening + data.count(b",") > MAX_VALUES and _values(data) > MAX_VALUES:
        raise errors.BadRequest(f"{what} holds more than {MAX_VALUES} JSON values")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.BadRequest(f"{what} is not valid JSON") from None
    except RecursionError:  # not reachable under MAX_DEPTH; kept as the last guard
        raise errors.BadRequest(f"{what} is nested too deep") from None
    except ValueError:  # the only other ValueError json raises: int_max_str_digits
        limit = sys.get_int_max_str_digits()
        raise errors.BadRequest(f"{what} holds an integer of more than {limit} digits") from None
