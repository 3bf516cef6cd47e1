"""Prefect flows, one per file; entrypoints referenced from prefect.yaml and deployments/."""
