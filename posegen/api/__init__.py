"""The FastAPI layer: authenticates, validates, charges, submits flow runs and answers 202."""
