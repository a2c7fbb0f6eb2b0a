"""Checks that a written figure is a real picture, not just a file."""

from pathlib import Path

import numpy as np


def assert_figure(path, min_width: int = 200, min_height: int = 150, min_colours: int = 3) -> None:
    """``path`` is a readable PNG at least this big with more than a blank background."""
    from PIL import Image

    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as im:
        assert im.format == "PNG", f"{path}: {im.format}"
        w, h = im.size
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert w >= min_width and h >= min_height, f"{path}: {w}x{h}"
    colours = len(np.unique(pixels[:: max(1, len(pixels) // 20000)], axis=0))
    assert colours >= min_colours, f"{path}: only {colours} colours (blank?)"
