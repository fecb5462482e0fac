"""Drift tests: each rule that two places must agree on is held to its one source.

- a generation's options are declared once (`GenerationOptions`): the table has a column for
  each, the engine's spec takes each by name, the GraphQL inputs offer each;
- the request schema's ranges are `stillmotion.options`, which the engine uses too;
- the server's error codes are the SDK's; the SDK's price estimate is the server's default.
"""

from __future__ import annotations

import dataclasses
import inspect

from stillmotion import errors, options
from stillmotion.client import _ops
from stillmotion.client import errors as sdk_errors
from stillmotion.config import Settings
from stillmotion.engine import motion
from stillmotion.engine.render import ASPECT_RATIOS, VERSIONS, RenderSpec
from stillmotion.generations import gql
from stillmotion.generations.models import Generation
from stillmotion.generations.schemas import OPTION_NAMES, GenerateRequest, GenerationOptions


def test_every_option_is_a_column_of_the_same_name():
    columns = set(Generation.__table__.columns.keys())
    assert set(OPTION_NAMES) <= columns


def test_the_engine_spec_takes_every_option_by_its_name():
    fields = {f.name for f in dataclasses.fields(RenderSpec)}
    assert set(OPTION_NAMES) <= fields
    # and the values the API stores are what the spec accepts
    RenderSpec(**GenerationOptions(seed=1).option_values())


def test_the_graphql_inputs_offer_every_option():
    generate = {f.python_name for f in gql.GenerateOptions.__strawberry_definition__.fields}
    animate = {f.python_name for f in gql.ImageAnimationInput.__strawberry_definition__.fields}
    image = {f.python_name for f in gql.GenerateImageInput.__strawberry_definition__.fields}
    assert generate == set(OPTION_NAMES) - {"prompt"} and "prompt" in image
    assert set(OPTION_NAMES) <= animate
    assert set(gql._OPTION_FIELDS) == set(OPTION_NAMES)


def test_the_request_ranges_are_the_engines():
    fields = GenerateRequest.model_fields
    bounds = {type(m).__name__: m for m in fields["duration"].metadata}
    assert (bounds["Ge"].ge, bounds["Le"].le) == (options.DURATION_MIN, options.DURATION_MAX)
    assert VERSIONS == options.VERSIONS and ASPECT_RATIOS == options.ASPECT_RATIOS
    assert tuple(motion.INTENSITY) == options.MOTION_INTENSITIES
    assert motion.AXES == options.CAMERA_AXES


def _server_codes() -> set[str]:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)]
    return {
        c.code
        for c in classes
        if issubclass(c, errors.StillmotionError) and c is not errors.StillmotionError
    }


def test_every_server_error_code_has_its_sdk_exception():
    sdk = set(sdk_errors._BY_CODE)
    missing = _server_codes() - sdk
    assert not missing, f"the SDK has no exception for {sorted(missing)}"
    for code in _server_codes():
        assert sdk_errors._BY_CODE[code].default_code == code


def test_the_sdk_estimate_uses_the_servers_default_prices():
    settings = Settings()
    assert settings.prices == _ops.PRICE_PER_SECOND
    assert settings.brush_multiplier == _ops.BRUSH_MULTIPLIER
