"""Prefect tasks: thin wrappers that add retries, timeouts and limits around one posegen call."""
