"""H.264 encoding with PyAV: RGB frames in, a tagged BT.709 MP4 out, one frame at a time.

The RGB -> Y'CbCr conversion is done here with the BT.709 matrix and limited ("tv") range, in
OpenCV (one 3x3 transform, then a 2x2 box average for the 4:2:0 chroma). Doing it ourselves
pins the maths the tags promise; swscale's defaults would be BT.601 unless told otherwise.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# BT.709 luma coefficients and the limited-range scaling (Y' 16…235, Cb/Cr 16…240).
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_RGB_TO_YCBCR = np.array(
    [
        [_KR, _KG, _KB],
        [-_KR / (2 * (1 - _KB)), -_KG / (2 * (1 - _KB)), 0.5],
        [0.5, -_KG / (2 * (1 - _KR)), -_KB / (2 * (1 - _KR))],
    ]
)
_SCALE = np.array([219.0, 224.0, 224.0])[:, None] / 255.0
_OFFSET = np.array([[16.0], [128.0], [128.0]])
_MATRIX = np.hstack([_RGB_TO_YCBCR * _SCALE, _OFFSET]).astype(np.float32)

# AVCOL_* values: 1 is BT.709 for primaries, transfer and matrix; range 1 is MPEG ("tv").
_BT709 = 1
_RANGE_TV = 1


def i420_planes(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y', Cb and Cr planes inside an (H*3/2, W) I420 buffer (writable)."""
    height = buf.shape[0] * 2 // 3
    width = buf.shape[1]
    quarter = (height // 2) * (width // 2)
    flat = buf[height:].reshape(-1)
    shape = (height // 2, width // 2)
    return buf[:height], flat[:quarter].reshape(shape), flat[quarter:].reshape(shape)


def rgb_to_ycc444(rgb: np.ndarray) -> np.ndarray:
    """BT.709 limited-range Y'CbCr at full resolution (HxWx3 uint8), for resampling."""
    return cv2.transform(rgb, _MATRIX)


def rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BT.709 limited-range Y' (HxW) and Cb/Cr at half size ((H/2)x(W/2)x2), uint8.

    `rgb` must have even sides. Chroma is the 2x2 box average (centre-sited).
    """
    height, width = rgb.shape[:2]
    ycc = cv2.transform(rgb, _MATRIX)  # uint8 in, rounded and saturated uint8 out
    chroma = cv2.resize(ycc[..., 1:], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(ycc[..., 0]), chroma


def pack_i420(y: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Stack a Y' plane and interleaved half-size Cb/Cr into the (H*3/2, W) I420 layout."""
    height, width = y.shape
    out = np.empty((height * 3 // 2, width), np.uint8)
    py, pb, pr = i420_planes(out)
    py[:] = y
    cv2.split(chroma, [pb, pr])
    return out


def rgb_to_i420(rgb: np.ndarray) -> np.ndarray:
    """BT.709 limited-range I420 planes of an RGB uint8 image, stacked as PyAV expects.

    Returns a (H * 3 / 2, W) uint8 array: the Y' plane, then Cb, then Cr (each W/2 x H/2).
    Chroma is centre-sited (the 2x2 average), which the stream's `chromaloc=1` says.
    """
    return pack_i420(*rgb_to_ycbcr(rgb))


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Exact BT.709 limited-range inverse, as a correct player applies it (float, rounded).

    `cb`/`cr` may be subsampled; they are upsampled bilinearly. Used by tests and benchmarks to
    judge colour without swscale's own rounding.
    """
    height, width = y.shape
    luma = (y.astype(np.float32) - 16.0) * (255.0 / 219.0)
    u = cv2.resize(cb, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    v = cv2.resize(cr, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    u = (u - 128.0) * (255.0 / 224.0)
    v = (v - 128.0) * (255.0 / 224.0)
    r = luma + 2 * (1 - _KR) * v
    b = luma + 2 * (1 - _KB) * u
    g = (luma - _KR * r - _KB * b) / _KG
    return np.clip(np.rint(np.dstack([r, g, b])), 0, 255).astype(np.uint8)


class Encoder:
    """Streams frames into an MP4 (H.264, yuv420p, BT.709 tags, `+faststart`).

    Use as a context manager; `write_i420` takes the output of `rgb_to_i420`. `close()`
    flushes the encoder (the slow tail of x264's lookahead) and finishes the file.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        fps: int,
        crf: int = 18,
        preset: str = "medium",
        threads: int = 0,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError("width and height must be even for yuv420p")
        self.width, self.height, self.fps = width, height, fps
        self.frames = 0
        self._container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            stream = self._container.add_stream("libx264", rate=Fraction(fps, 1))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            cc = stream.codec_context
            cc.color_primaries = _BT709
            cc.color_trc = _BT709
            cc.colorspace = _BT709
            cc.color_range = _RANGE_TV
            cc.options = {
                "crf": str(crf),
                "preset": preset,
                "threads": str(threads),
                "x264-params": (
                    "colorprim=bt709:transfer=bt709:colormatrix=bt709:range=tv:chromaloc=1"
                ),
            }
            self._stream = stream
        except Exception:
            self._container.close()
            raise

    def write_i420(self, planes: np.ndarray) -> None:
        if self.height % 4 == 0:
            # No copy: libx264 copies the picture into its own buffers during `encode`. (PyAV
            # derives the height as rows // 6 * 4, wrong unless the height is a multiple of 4.)
            frame = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.colorspace = _BT709
        frame.color_range = _RANGE_TV
        frame.pts = self.frames
        self.frames += 1
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()

    def abort(self) -> None:
        """Close without flushing (the caller deletes the file)."""
        self._container.close()

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
