"""How flows are served locally (`serve`) and deployed to the `posegen` work pool (prefect.yaml)."""
