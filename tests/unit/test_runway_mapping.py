"""The Runway surface's tables (`runway_api/mapping.py`), and that the surface is a transport:
it holds no rule of its own (no tables, no SQL), only calls into the service layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stillmotion import errors
from stillmotion.generations.schemas import GenerationOptions
from stillmotion.runway_api import mapping

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "stillmotion" / "runway_api"


def test_the_surface_imports_no_tables_no_sql_and_no_database():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                assert not name.startswith("sqlalchemy"), f"{path.name} imports {name}"
                assert not name.endswith(".models"), f"{path.name} imports {name}"
                assert name != "stillmotion.db", f"{path.name} imports {name}"


@pytest.mark.parametrize("model", list(mapping.MODELS.values()), ids=list(mapping.MODELS))
def test_every_ratio_is_a_size_the_native_options_take(model):
    for ratio in model.ratios:
        width, height = mapping.pixel_size(model, ratio, api_version=mapping.VERSION_CURRENT)
        options = GenerationOptions(width=width, height=height)
        assert (options.width, options.height) == (width, height)
    for legacy, pixels in model.legacy_ratios:
        assert pixels in model.ratios
        assert mapping.pixel_size(model, legacy, api_version=mapping.VERSION_LEGACY) == tuple(
            int(v) for v in pixels.split(":")
        )


def test_nearest_aspect():
    assert mapping.nearest_aspect(1584, 672) == "16:9"
    assert mapping.nearest_aspect(1104, 832) == "1:1"
    assert mapping.nearest_aspect(720, 1280) == "9:16"


def test_a_ratio_the_model_does_not_allow_names_ratio_and_the_allowed():
    model = mapping.MODELS["gen4_turbo"]
    with pytest.raises(errors.ValidationFailed) as refused:
        mapping.pixel_size(model, "16:9", api_version=mapping.VERSION_CURRENT)
    body = mapping.error_body(refused.value)["error"]
    assert body.startswith("Invalid parameter 'ratio'") and "2024-09-13" in body
    assert all(ratio in body for ratio in model.ratios)


def test_native_field_errors_read_with_runways_names():
    exc = errors.ValidationFailed("imageUrl: not an image", field="imageUrl")
    assert mapping.error_body(exc) == {"error": "Invalid parameter 'promptImage': not an image"}
    exc = errors.ValidationFailed("camera.zoom: too big", field="camera.zoom")
    assert (
        mapping.error_body(exc)["error"] == "Invalid parameter 'stillmotion.camera.zoom': too big"
    )
    daily = mapping.error_response(errors.DailyLimitExceeded(retry_after=3600))
    assert daily.status_code == 429 and daily.headers["x-should-retry"] == "false"
    assert (
        mapping.error_response(errors.InsufficientCredits(required=5, available=1)).status_code
        == 400
    )


def test_unknown_models_are_403_as_runway_answers():
    with pytest.raises(errors.Forbidden, match="Model variant gen3_alphaturbo is not available"):
        mapping.model_for("gen3_alphaturbo")
