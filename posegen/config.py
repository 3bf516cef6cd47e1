"""The one settings object: every setting comes from an environment variable prefixed POSEGEN_."""

from __future__ import annotations

import hashlib
import os
import secrets
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Embedded defaults live under `home`; set the URLs for PostgreSQL, S3 and a remote Prefect."""

    model_config = SettingsConfigDict(env_prefix="POSEGEN_", extra="ignore")

    # -- where state lives: the embedded defaults, or real services ------------------------------
    home: Path = Path(".posegen")
    database_url: str | None = None
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_key: str | None = Field(
        default=None, validation_alias=AliasChoices("POSEGEN_S3_KEY", "AWS_ACCESS_KEY_ID")
    )
    s3_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("POSEGEN_S3_SECRET", "AWS_SECRET_ACCESS_KEY"),
    )

    # -- the API and the web app ------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_public_url: str | None = None
    jwt_secret: SecretStr | None = None
    jwt_days: int = 30
    # The web app: a one-time sign-in link works once and for this long; a browser session
    # lasts this many days (sign-out ends it at once). The cookie is Secure when the public URL
    # is https, or when this says so.
    web_login_link_minutes: int = Field(default=15, ge=1)
    web_session_days: int = Field(default=14, ge=1)
    web_cookie_secure: bool | None = None
    # Operations: structured logs and the completion-event stream (GET /events).
    log_json: bool = False
    events_heartbeat_seconds: float = 15.0
    # How long after an event is emitted Prefect may still not return it from /events/filter
    # (its event persister flushes every 5 s): a resumed stream re-reads this window once.
    events_settle_seconds: float = 6.0

    # -- uploads and remote images ----------------------------------------------------------------
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    remote_fetch_timeout: float = 15.0

    # -- per-user rate limits on the endpoints that start work (posegen/api/rate_limit.py) -------
    # A burst of this many, then one more every 60/N seconds; 0 turns a limit off,
    # `enabled=false` all of them.
    rate_limit_enabled: bool = True
    rate_limit_background_per_minute: int = Field(default=20, ge=0)
    rate_limit_exports_per_minute: int = Field(default=10, ge=0)
    rate_limit_regenerate_export_per_minute: int = Field(default=30, ge=0)
    rate_limit_requests_per_minute: int = Field(default=10, ge=0)
    rate_limit_uploads_per_minute: int = Field(default=30, ge=0)

    # -- background change: cost, FLUX, segmentation, limits --------------------------------------
    background_change_cost: int = 10
    background_change_slots: int = 3
    # A run killed inside its slot cannot release it: the slot's lease lapses this long after
    # its last renewal (Prefect's minimum is 60 s; live runs renew every 3/4 of it).
    background_change_slot_lease_seconds: float = Field(default=120.0, ge=60, le=86400)
    background_change_stale_minutes: int = 30
    retry_backoff_seconds: float = 2.0
    flux_api_url: str = "https://api.bfl.ai"
    flux_api_key: SecretStr | None = None
    flux_model: str = "flux-pro-1.1"
    flux_poll_interval: float = 0.5
    flux_timeout: float = 120.0
    flux_rate_per_minute: int = 10
    # How many FLUX calls may go at once before the rate spaces them; 0 = flux_rate_per_minute.
    flux_rate_burst: int = Field(default=0, ge=0)
    rembg_model: str = "u2netp"
    rembg_home: Path | None = Field(
        default=None, validation_alias=AliasChoices("REMBG_HOME", "POSEGEN_REMBG_HOME")
    )
    # onnxruntime threads per session; 0 = one per usable core. A warm pool of N processes
    # gives each max(1, cores // N) unless this is set.
    onnx_threads: int = Field(default=0, ge=0)

    # -- exports ----------------------------------------------------------------------------------
    # Threads rendering pose x format in one export run (Pillow releases the GIL while resampling).
    export_workers: int = 4
    # Credits per file an `ai_expand` export fills with FLUX (outpainted photo or new AI
    # background); 0 for enterprise-unlimited users, like a background change.
    ai_expand_cost: int = Field(default=10, ge=0)
    # Cron for the nightly export (UTC unless the timezone says otherwise).
    nightly_exports_cron: str = "0 2 * * *"
    nightly_exports_timezone: str = "UTC"
    # With no earlier successful nightly run, how far back the first one looks.
    nightly_first_window_hours: int = 24

    # -- community pose requests ------------------------------------------------------------------
    # Pending requests are public and take every seller's votes (the seed's intent: the admin's
    # "popular" list ranks what sellers want). On: pending requests are seen only by their
    # author and admins until an admin approves them.
    pose_requests_premoderation: bool = False

    # -- operational alerts (seed §11; posegen/alerts.py, flows/ops_alerts.py, README "Alerts") --
    # Each alert fires when its figure is above its threshold. Rates are over the last
    # `alert_window_minutes`; deployments/prometheus/alerts.yml states the same values.
    alert_window_minutes: float = Field(default=15.0, gt=0)
    alert_failure_rate: float = Field(default=0.10, ge=0)  # failed / finished background changes
    alert_queue_depth: int = Field(default=100, ge=0)  # background-change runs Scheduled or Pending
    alert_processing_seconds: float = Field(default=120.0, gt=0)  # a run Running longer than this
    alert_refund_rate: float = Field(default=0.05, ge=0)  # refunds / charges of credits
    alert_pending_requests: int = Field(default=50, ge=0)  # pose requests waiting for an admin
    # Where the alert automation posts `{"text": ...}` (Slack-compatible); unset: no automation.
    alert_webhook_url: SecretStr | None = None

    # -- Prefect: the local server, the runner, the warm pool, deployment names ------------------
    # The local Prefect server `posegen up` starts (always on 127.0.0.1, on the embedded
    # PostgreSQL), unless PREFECT_API_URL names another one.
    prefect_port: int = 4200
    # API worker processes of that server; more than 1 adds a separate services process and
    # needs Redis (messaging, causal ordering, lease storage and docket shared between them).
    prefect_workers: int = Field(default=1, ge=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    runner_limit: int = 4
    # Background changes run in this many warm processes (model loaded once); 0 serves them
    # like the other deployments, one fresh subprocess per run (see docs/ARCHITECTURE.md).
    warm_workers: int = 3
    # The warm pool's safety-net poll; new runs normally wake it through a Prefect event.
    warm_poll_seconds: float = 2.0
    # Flow-run heartbeats (Prefect wants >= 30 s); three missed beats mark a run Crashed.
    flows_heartbeat_seconds: int = Field(default=30, ge=30)
    # Silence after which the zombie automation marks a run Crashed; 0 = three missed beats.
    flows_crashed_after_seconds: int = Field(default=0, ge=0)
    deployment_background_change: str = "background-change/background-change"
    deployment_multi_format_export: str = "multi-format-export/multi-format-export"
    deployment_nightly_exports: str = "nightly-exports/nightly-exports"
    deployment_refund_reconciler: str = "refund-reconciler/refund-reconciler"
    deployment_pose_request_stats: str = "pose-request-stats/pose-request-stats"
    deployment_ops_alerts: str = "ops-alerts/ops-alerts"

    @property
    def home_dir(self) -> Path:
        """Absolute, so subprocesses started elsewhere (flow runs) find the same state."""
        return self.home.expanduser().resolve()

    @property
    def flows_silence_seconds(self) -> int:
        """How long a run may go without a heartbeat before it counts as dead."""
        return self.flows_crashed_after_seconds or 3 * self.flows_heartbeat_seconds

    @property
    def flux_burst(self) -> int:
        return self.flux_rate_burst or self.flux_rate_per_minute

    @property
    def database(self) -> str:
        """POSEGEN_DATABASE_URL, else the embedded PostgreSQL's `posegen` database."""
        return self.database_url or self.embedded_database_url("posegen")

    @property
    def embedded_postgres_dir(self) -> Path:
        """The embedded PostgreSQL's data directory (posegen/runtime/postgres.py runs it)."""
        return self.home_dir / "postgres"

    @property
    def embedded_postgres_socket_dir(self) -> Path:
        """Where the embedded server's Unix socket is: its data directory, unless that path is
        too long for a socket address (108 bytes on Linux), then a short one named after it."""
        data = self.embedded_postgres_dir
        if len(str(data / ".s.PGSQL.5432")) < 100:
            return data
        digest = hashlib.sha256(str(data).encode()).hexdigest()[:12]
        return Path("/tmp") / f"posegen-pg-{digest}"

    def embedded_database_url(self, name: str, driver: str = "psycopg") -> str:
        """A database of the embedded server over its socket (no TCP port to collide on)."""
        return f"postgresql+{driver}://postgres@/{name}?host={self.embedded_postgres_socket_dir}"

    @property
    def redis(self) -> tuple[str, int, int]:
        """POSEGEN_REDIS_URL as host, port and database number."""
        parts = urlsplit(self.redis_url)
        return parts.hostname or "127.0.0.1", parts.port or 6379, int(parts.path.strip("/") or 0)

    @property
    def storage(self) -> str:
        return self.storage_url or str(self.home_dir / "storage")

    @property
    def models_dir(self) -> Path:
        return (self.rembg_home or self.home_dir / "models").expanduser().resolve()

    @property
    def public_url(self) -> str:
        return self.api_public_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def flux_configured(self) -> bool:
        """An empty POSEGEN_FLUX_API_KEY counts as unset: every FLUX call would be refused."""
        return self.flux_api_key is not None and bool(self.flux_api_key.get_secret_value())

    @property
    def cookie_secure(self) -> bool:
        if self.web_cookie_secure is not None:
            return self.web_cookie_secure
        return self.public_url.startswith("https://")

    @property
    def local_prefect_api_url(self) -> str:
        """The API of the Prefect server `posegen up` runs; PREFECT_API_URL for its children."""
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def jwt_key(self) -> str:
        """The HS256 key; generated once into POSEGEN_HOME so tokens survive restarts."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.home_dir / "jwt_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between sessions)."""
    get_settings.cache_clear()
