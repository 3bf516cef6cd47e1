"""The seller's web app: server-rendered pages served by the API's own FastAPI app."""
