"""Prefect flows, one per file; entrypoints referenced from prefect.yaml and deployments/.

Every flow-run process imports this package first, so with POSEGEN_LOG_JSON=1 posegen's own
log lines from flow runs are JSON with the flow run id, like the API's.
"""

from posegen.config import get_settings
from posegen.logging import configure_logging

if get_settings().log_json:
    configure_logging()
