"""Warm-up for a long-lived process that will run background changes.

The first change in a process pays for `import rembg`, the model load and onnxruntime's first
run (seconds, bench/RESULTS.md). A warm pool calls this once, before it takes any run.
"""

from __future__ import annotations

from PIL import Image

from posegen.imaging import segmentation
from posegen.imaging.encoding import encode_png


def warm_up() -> None:
    """Load the configured model and push one small image through segmentation and encoding."""
    image = Image.new("RGB", (96, 144), (200, 180, 160))
    mask = segmentation.segment(image)
    encode_png(mask)
