"""Shared inputs for the engine tests: real photographs from scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    # 451x300 -> 450x300 so a static render at the source size needs no resampling
    return Image.fromarray(np.ascontiguousarray(data.chelsea()[:, :450]))
