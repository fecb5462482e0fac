"""The encoder on its own: BT.709 planes in, the same planes back out of the MP4."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from stillmotion.engine.encode import Encoder, i420_planes, rgb_to_i420, ycbcr_to_rgb
from stillmotion.engine.metrics import decode_rgb


@pytest.mark.parametrize("height", [90, 92, 54])  # multiples of 4 and not (PyAV's fast path)
def test_frames_come_back_as_written(tmp_path, height):
    picture = np.ascontiguousarray(data.chelsea()[:height, :160])
    planes = rgb_to_i420(picture)
    expected = ycbcr_to_rgb(*i420_planes(planes)).astype(np.float32)
    out = tmp_path / "enc.mp4"
    with Encoder(out, width=160, height=height, fps=24, crf=12) as enc:
        for _ in range(6):
            enc.write_i420(planes.copy())
    frames = list(decode_rgb(out))
    assert len(frames) == 6
    for frame in frames:
        assert frame.shape == (height, 160, 3)
        assert np.abs(frame.astype(np.float32) - expected).mean() < 1.5


def test_odd_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Encoder(tmp_path / "x.mp4", width=161, height=90, fps=24)
