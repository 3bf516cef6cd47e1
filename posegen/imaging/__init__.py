"""Image work: decoding uploads, model files, segmentation (rembg sessions) and compositing."""
