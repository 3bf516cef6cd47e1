"""Where the API lives (a DESIGN.md contract), importable without building the FastAPI app."""

BASE_PATH = "/api/apps/pose-generator"
