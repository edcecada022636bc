"""PNG pictures with nothing beyond numpy and zlib: a PNG writer, a 5x7 bitmap font for labels,
labelled strips of images with a colour bar, the error colour ramp, and the normal-map sheets of
the clothed-human protocol."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from .io import check_output_dir

# Error colour ramp: blue (0) -> yellow (half the scale) -> red (the scale and beyond).
_RAMP = np.array([[0.19, 0.36, 0.85], [0.98, 0.86, 0.22], [0.84, 0.10, 0.11]])


def error_colours(distance: np.ndarray, scale: float) -> np.ndarray:
    """(N, 3) uint8 colours for distances, saturating at ``scale``."""
    t = np.clip(np.asarray(distance, dtype=np.float64) / scale, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.minimum(t.astype(int), len(_RAMP) - 2)
    frac = (t - low)[:, None]
    return np.round(255 * ((1 - frac) * _RAMP[low] + frac * _RAMP[low + 1])).astype(np.uint8)



def write_png(path: str, image: np.ndarray) -> str:
    """Writes an (H, W, 3) uint8 RGB image as an 8-bit PNG (no dependency beyond zlib)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_png: image must be (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * 3)], axis=1)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)
    return path


# A 5x7 bitmap font for the labels of the PNGs: each glyph is 7 rows of 5 bits, as hex pairs.
_GLYPHS = {
    "A": "0e11111f111111", "B": "1e11111e11111e", "C": "0e11101010110e", "D": "1e11111111111e",
    "E": "1f10101e10101f", "F": "1f10101e101010", "G": "0e11101711110f", "H": "1111111f111111",
    "I": "0e04040404040e", "J": "0702020202120c", "K": "11121418141211", "L": "1010101010101f",
    "M": "111b1515111111", "N": "11111915131111", "O": "0e11111111110e", "P": "1e11111e101010",
    "Q": "0e11111115120d", "R": "1e11111e141211", "S": "0f10100e01011e", "T": "1f040404040404",
    "U": "1111111111110e", "V": "11111111110a04", "W": "1111111515150a", "X": "11110a040a1111",
    "Y": "11110a04040404", "Z": "1f01020408101f", "0": "0e11131519110e", "1": "040c040404040e",
    "2": "0e11010204081f", "3": "1f02040201110e", "4": "02060a121f0202", "5": "1f101e0101110e",
    "6": "0608101e11110e", "7": "1f010204080808", "8": "0e11110e11110e", "9": "0e11110f01020c",
    ".": "00000000000c0c", ",": "000000000c0408", "-": "0000001f000000", "+": "0004041f040400",
    ":": "000c0c000c0c00", "=": "00001f001f0000", ">": "08040201020408", "<": "02040810080402",
    "%": "18190204081303", "(": "02040808080402", ")": "08040202020408", "/": "00010204081000",
    "_": "0000000000001f", "^": "040a1100000000", " ": "00000000000000",
}
_GLYPH_W, _GLYPH_H = 6, 8  # advance and line height: 5x7 ink plus one pixel of spacing


def _glyph(char: str) -> np.ndarray:
    code = _GLYPHS.get(char.upper(), _GLYPHS[" "])
    rows = [int(code[2 * k: 2 * k + 2], 16) for k in range(7)]
    return np.array([[(r >> (4 - b)) & 1 for b in range(5)] for r in rows], dtype=bool)


def text_width(text: str, scale: int = 1) -> int:
    return len(text) * _GLYPH_W * scale


def draw_text(canvas: np.ndarray, text: str, x: int, y: int, colour=(0, 0, 0), scale: int = 1) -> None:
    """Draws ``text`` (upper case, digits, basic punctuation) into an (H, W, 3) uint8 canvas with its
    top-left corner at (x, y); what falls outside the canvas is dropped."""
    for k, char in enumerate(text):
        ink = np.kron(_glyph(char), np.ones((scale, scale), dtype=bool))
        top, left = y, x + k * _GLYPH_W * scale
        h = min(ink.shape[0], canvas.shape[0] - top)
        w = min(ink.shape[1], canvas.shape[1] - left)
        if h > 0 and w > 0 and top >= 0 and left >= 0:
            canvas[top:top + h, left:left + w][ink[:h, :w]] = colour


_BORDER = (128, 128, 128)  # the grey between and around the views: distinct from both backgrounds


def labelled_strip(images: np.ndarray, labels: Sequence[str], title: str = "") -> tuple[np.ndarray, list]:
    """The (C, H, W, 3) uint8 views side by side on a grey canvas, separated by a gap, each with its
    label above it, under an optional title line. Returns the canvas and the (row, column) of each
    view's top-left pixel."""
    count, height, width = images.shape[:3]
    scale = 2 if width >= 256 else 1
    gap = max(4, width // 32)
    panel = max(width, max((text_width(t, scale) for t in labels), default=0))
    line = _GLYPH_H * scale + gap
    top = gap + (line if title else 0)
    canvas = np.empty((top + line + height + gap, max(gap + count * (panel + gap), 2 * gap + text_width(title, scale)),
                       3), dtype=np.uint8)
    canvas[:] = _BORDER
    draw_text(canvas, title, gap, gap, (255, 255, 255), scale)
    offsets = []
    for k in range(count):
        left = gap + k * (panel + gap)
        label = labels[k] if k < len(labels) else ""
        draw_text(canvas, label, left + (panel - text_width(label, scale)) // 2, top, (255, 255, 255), scale)
        column = left + (panel - width) // 2
        canvas[top + line:top + line + height, column:column + width] = images[k]
        offsets.append((top + line, column))
    return canvas, offsets


def _colour_bar(width: int, scale: int, title: str) -> np.ndarray:
    """A horizontal colour bar of the error ramp (0 to >= 1) with ticks and a title, on grey."""
    gap = 4 * scale
    bar_w = max(min(width - 2 * gap, 256 * scale), 60)
    bar_h = 10 * scale
    ticks = [(0.0, "0"), (0.25, "0.25"), (0.5, "0.5"), (0.75, "0.75"), (1.0, ">=1")]
    height = gap + _GLYPH_H * scale + gap + bar_h + 2 * scale + _GLYPH_H * scale + gap
    strip = np.empty((height, max(width, bar_w + 2 * gap), 3), dtype=np.uint8)
    strip[:] = _BORDER
    left = (strip.shape[1] - bar_w) // 2
    draw_text(strip, title, (strip.shape[1] - text_width(title, scale)) // 2, gap, (255, 255, 255), scale)
    top = gap + _GLYPH_H * scale + gap
    strip[top:top + bar_h, left:left + bar_w] = error_colours(np.linspace(0.0, 1.0, bar_w), 1.0)[None]
    for value, text in ticks:
        x = left + int(round(value * (bar_w - 1)))
        strip[top + bar_h:top + bar_h + 2 * scale, max(x - scale // 2, 0):x + max(scale // 2, 1)] = 255
        tx = min(max(x - text_width(text, scale) // 2, 0), strip.shape[1] - text_width(text, scale))
        draw_text(strip, text, tx, top + bar_h + 2 * scale + scale, (255, 255, 255), scale)
    return strip


def save_normal_pngs(directory, pred_images, gt_images, error_images, view_labels: Sequence[str] = ()) -> list[str]:
    """Writes normals_pred.png and normals_gt.png ((C, H, W, 3) images in [0, 1], the views side by
    side with a gap and a label each) and normal_error.png (per-pixel squared RGB error, blue 0 to
    red >= 1, with a colour bar). Returns the paths."""
    check_output_dir(directory)
    os.makedirs(directory, exist_ok=True)
    count = pred_images.shape[0]
    labels = list(view_labels) or [f"VIEW {k}" for k in range(count)]

    def as_uint8(images) -> np.ndarray:
        return np.round(np.clip(images.detach().double().cpu().numpy(), 0.0, 1.0) * 255).astype(np.uint8)

    paths = []
    for name, images, what in (("normals_pred.png", pred_images, "PREDICTION"),
                                ("normals_gt.png", gt_images, "GROUND TRUTH")):
        canvas, _ = labelled_strip(as_uint8(images), labels, f"{what} NORMALS")
        paths.append(write_png(os.path.join(directory, name), canvas))
    error = error_images.detach().double().cpu().numpy()
    colours = error_colours(error.reshape(-1), 1.0).reshape(*error.shape, 3)
    canvas, _ = labelled_strip(colours, labels, "NORMAL ERROR")
    scale = 2 if error.shape[-1] >= 256 else 1
    bar = _colour_bar(canvas.shape[1], scale, "SQUARED RGB ERROR PER PIXEL")
    if bar.shape[1] > canvas.shape[1]:  # tiny images: widen the strip to fit the bar
        wide = np.empty((canvas.shape[0], bar.shape[1], 3), dtype=np.uint8)
        wide[:] = _BORDER
        wide[:, :canvas.shape[1]] = canvas
        canvas = wide
    paths.append(write_png(os.path.join(directory, "normal_error.png"), np.concatenate([canvas, bar], axis=0)))
    return paths
