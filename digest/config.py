"""Settings: TOML file plus DIGEST_* environment, validated into frozen objects.

Where the file comes from: `--config PATH`, else $DIGEST_CONFIG, else ./digest.toml, else built-in
defaults (the bundled sample feed and a SQLite file in the working directory). Relative paths in a
config file (local feeds, the SQLite file) are relative to that file's folder, so cron and systemd
find the same files from any working directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_FEED = PACKAGE_DIR / "data" / "hf-daily-papers-sample.atom"
DEFAULT_CONFIG_NAME = "digest.toml"
DEFAULT_DATABASE_URL = "sqlite:///paper-digest.sqlite3"


def resource_dir(name: str) -> Path:
    """Locate a top-level resource folder (templates, migrations) in a checkout or inside the wheel."""
    packaged = PACKAGE_DIR / f"_{name}"
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / name


def example_config_path() -> Path:
    """config.example.toml: at the top of a checkout, or shipped inside the wheel."""
    packaged = PACKAGE_DIR / "_config.example.toml"
    return packaged if packaged.is_file() else PACKAGE_DIR.parent / "config.example.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = DEFAULT_DATABASE_URL


SourceKind = Literal["auto", "arxiv", "arxiv-api", "hf-daily", "rss", "atom"]


class SourceSettings(_Section):
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=1)
    kind: SourceKind = "auto"
    enabled: bool = True
    title: str = Field(default="", max_length=200)
    """How readers see the source named in a digest (default: the host name of its URL)."""


class FetchSettings(_Section):
    contact: str = ""
    """Operator's contact (email or URL), sent in the User-Agent as feed owners ask."""
    timeout: float = Field(default=20.0, gt=0)
    max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    include_cross_lists: bool = True
    include_replacements: bool = False
    alert_after: int = Field(default=3, ge=1)
    """Consecutive failed fetches of one source before it needs the operator (exit 1, status)."""


class SmtpSettings(_Section):
    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    username: str = ""
    password: str = ""
    security: Literal["none", "starttls", "tls"] = "none"
    timeout: float = Field(default=30.0, gt=0)
    connections: int = Field(default=4, ge=1, le=256)
    rate_limit: float = Field(default=0.0, ge=0)
    """Messages per second across all connections; 0 means no limit."""
    retries: int = Field(default=2, ge=0, le=10)
    """Tries again within a run after a temporary failure (4xx, dropped connection, timeout)."""
    retry_backoff: float = Field(default=1.0, ge=0)
    """Seconds before the first retry; doubled each time, with jitter."""
    ca_file: str = ""
    """PEM file of the CA that signed the relay's certificate (default: the system's CAs)."""


class EmailSettings(_Section):
    from_: str = Field(default="Paper Digest <digest@localhost>", alias="from")
    reply_to: str = ""
    list_id: str = ""
    templates_dir: str = ""
    postal_address: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: str = ""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


MIN_SECRET_KEY_CHARS = 16


class SiteSettings(_Section):
    base_url: str = "http://localhost:8000"
    secret_key: str = ""
    title: str = "Paper Digest"

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < MIN_SECRET_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_SECRET_KEY_CHARS} characters (it signs every link; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class RankingSettings(_Section):
    k1: float = Field(default=1.2, ge=0)
    b: float = Field(default=0.75, ge=0, le=1)
    title_weight: float = Field(default=2.0, ge=0)
    trending_weight: float = Field(default=0.3, ge=0)
    """How much upvotes reorder papers of similar relevance; 0 turns trending off."""
    min_score: float = Field(default=1.0, ge=0)
    partial_min_score: float = Field(default=3.0, ge=0)
    """A paper that matches only part of a multi-word interest ("neural networks" of "graph
    neural networks") must reach this score (relevance x trending; its relevance must still
    reach min_score) to be sent; it ranks below every paper that matches some interest in full."""
    window_days: int = Field(default=90, ge=1)
    """How many days of stored papers give the corpus statistics (IDF, acronyms)."""


class DigestSettings(_Section):
    max_papers: int = Field(default=10, ge=1, le=100)
    send_hour: int = Field(default=7, ge=0, le=23)
    timezone: str = "UTC"
    first_digest_days: int = Field(default=3, ge=1, le=60)
    """A first digest looks back this many days for new papers."""
    empty: Literal["skip", "trending"] = "skip"
    """When nothing matches: skip the digest, or send the day's top trending papers instead."""
    trending_count: int = Field(default=3, ge=0, le=20)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return validate_timezone(value)


class DeliverySettings(_Section):
    batch_size: int = Field(default=200, ge=1)
    """Readers a worker claims at once, each with all its channels of the day."""
    lease_seconds: int = Field(default=300, ge=10)
    max_attempts: int = Field(default=5, ge=1)
    bounce_after: int = Field(default=3, ge=1)
    """Permanent refusals (5xx) of one address before it is marked bounced."""
    prepare_process: Literal["auto", "always", "never"] = "auto"
    """Compose and render in preparer processes (one per core) while this one sends: "auto"
    does so for `digest run` and `digest schedule` on a machine with two cores or more when more
    than two batches are due (a `digest worker` stays one process: run one per core)."""
    transport: Literal["smtp", "file"] = "smtp"
    """smtp: send through [smtp]; file: write .eml files to outbox_dir for another system to send."""
    outbox_dir: str = "outbox"
    feeds_dir: str = ""
    """Also write each subscriber's Atom digest here as a file (optional; the web app serves them)."""
    keep_days: int = Field(default=180, ge=31)
    """Composed digests, finished deliveries and single mails older than this are pruned; each
    reader's newest digest is always kept. At least 31: private feeds show the last 30 days."""


class ScheduleSettings(_Section):
    fetch_minutes: int = Field(default=60, ge=1)
    """Fetch every source this often."""
    run_minutes: int = Field(default=15, ge=1)
    """Look for subscribers whose send hour has come this often."""


class LoggingSettings(_Section):
    format: Literal["text", "json"] = "text"
    """text: one readable line per event; json: one JSON object per line, for log collectors."""
    level: Literal["debug", "info", "warning", "error"] = "info"


class ExampleProfile(_Section):
    name: str
    keywords: str


DEFAULT_EXAMPLES: tuple[ExampleProfile, ...] = (
    ExampleProfile(
        name="federated@example.org", keywords='"federated learning", distillation, -medical'
    ),
    ExampleProfile(
        name="agents@example.org", keywords="LLM agents, reinforcement learning, reasoning"
    ),
    ExampleProfile(name="vision@example.org", keywords="diffusion models, image generation, video"),
)


class WebSettings(_Section):
    subscribe_per_ip_per_hour: int = Field(default=20, ge=1)
    """Sign-ups per network (an IPv4 address or an IPv6 /64) and hour."""
    subscribe_per_address_per_day: int = Field(default=3, ge=1)
    """Confirmation mails per inbox and day (ada+x@ and a.da@gmail.com count as ada@)."""
    subscribe_per_domain_per_hour: int = Field(default=60, ge=1)
    """Confirmation mails per recipient domain and hour (keeps the site off blocklists)."""
    previews_per_ip_per_hour: int = Field(default=120, ge=1)
    """Home-page previews (each ranks today's papers) per network and hour."""
    searches_per_ip_per_hour: int = Field(default=300, ge=1)
    """Public search feeds built per network and hour (answers from the cache are free)."""
    preference_pages_per_ip_per_hour: int = Field(default=120, ge=1)
    """Preference pages (each previews the reader's digest) per network and hour."""
    token_max_age_days: int = Field(default=7, ge=1)
    trusted_proxies: tuple[str, ...] = ()
    """Reverse proxies (addresses or networks) whose X-Forwarded-For is believed; none by default."""
    concurrent_rankings: int = Field(default=0, ge=0, le=256)
    """Previews and search feeds ranked at once (more wait a little, then get 503); 0: one per
    CPU core, at least 2."""
    request_timeout: float = Field(default=15.0, gt=0, le=600)
    """Seconds a client has to send a whole request (headers and body) before it is cut off."""
    max_connections: int = Field(default=400, ge=1)
    """Open connections at most; past it new ones are closed and requests get 503."""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None
        return value


class Settings(_Section):
    """Everything the program is told, validated."""

    database: DatabaseSettings = DatabaseSettings()
    sources: tuple[SourceSettings, ...] = (
        SourceSettings(name="hf-sample", url=str(SAMPLE_FEED), kind="atom"),
    )
    fetch: FetchSettings = FetchSettings()
    smtp: SmtpSettings = SmtpSettings()
    email: EmailSettings = EmailSettings()
    site: SiteSettings = SiteSettings()
    ranking: RankingSettings = RankingSettings()
    digest: DigestSettings = DigestSettings()
    delivery: DeliverySettings = DeliverySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    web: WebSettings = WebSettings()
    logging: LoggingSettings = LoggingSettings()
    examples: tuple[ExampleProfile, ...] = DEFAULT_EXAMPLES

    path: str | None = None
    """The file these settings were read from, if any."""


SECRET_KEYS = frozenset({"site.secret_key", "smtp.password", "smtp.username", "database.url"})
"""Settings whose values error messages never show (a database URL can carry a password)."""

ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "DIGEST_DATABASE_URL": ("database", "url"),
    "DIGEST_SMTP_HOST": ("smtp", "host"),
    "DIGEST_SMTP_PORT": ("smtp", "port"),
    "DIGEST_SMTP_USERNAME": ("smtp", "username"),
    "DIGEST_SMTP_PASSWORD": ("smtp", "password"),
    "DIGEST_SECRET_KEY": ("site", "secret_key"),
    "DIGEST_BASE_URL": ("site", "base_url"),
}


def validate_timezone(value: str) -> str:
    """Return the IANA zone name unchanged, or raise ValueError naming it."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)"
        ) from None
    return value


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: explicit path, $DIGEST_CONFIG, ./digest.toml, or None."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("DIGEST_CONFIG")
    if from_env:
        return Path(from_env)
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def load_settings(
    path: str | os.PathLike[str] | None = None, *, environ: dict[str, str] | None = None
) -> Settings:
    """Read, merge and validate settings; raise ConfigError with the key's name on any problem."""
    environ = dict(os.environ) if environ is None else environ
    config_path = find_config(path)
    data: dict[str, Any] = {}
    if config_path is not None:
        data = _read_toml(config_path)
        data["path"] = str(config_path)
        _resolve_relative_sources(data, config_path.parent)
    for var, (section, key) in ENV_OVERRIDES.items():
        if environ.get(var):
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                raise ConfigError(f"[{section}] must be a table")
            data[section][key] = environ[var]
    if config_path is not None:
        _resolve_relative_database(data, config_path.parent)
    return parse_settings(data)


def parse_settings(data: dict[str, Any]) -> Settings:
    """Validate a plain dict (as read from TOML) into Settings."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    names = [s.name for s in settings.sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"sources: the name {duplicates[0]!r} is used more than once")
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist (run `digest init` to write one)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _resolve_relative_sources(data: dict[str, Any], base: Path) -> None:
    """A local feed path in the config is relative to the config file, not the working directory."""
    for source in data.get("sources", []) or []:
        if not isinstance(source, dict):
            continue
        url = source.get("url")
        if isinstance(url, str) and "://" not in url and not Path(url).is_absolute():
            source["url"] = str((base / url).resolve())


# sqlite:///name is relative, sqlite:////name absolute; the path ends where the query begins
_SQLITE_URL = re.compile(r"^(?P<scheme>sqlite(?:\+\w+)?):///(?P<path>[^?]*)(?P<query>\?.*)?$")


def _resolve_relative_database(data: dict[str, Any], base: Path) -> None:
    """A relative SQLite file (the default one too) lives next to the config file, as local feeds do.

    Without this, `digest --config /etc/paper-digest/digest.toml run` started by cron from another
    folder would open a different, empty database there.
    """
    section = data.setdefault("database", {})
    if not isinstance(section, dict):
        return  # parse_settings names the problem
    url = section.get("url", DEFAULT_DATABASE_URL)
    if not isinstance(url, str):
        return
    match = _SQLITE_URL.match(url)
    if match is None:
        return
    path = match["path"]
    if not path or path == ":memory:" or path.startswith(("/", "~", "file:")):
        return
    section["url"] = f"{match['scheme']}:///{(base / path).resolve()}{match['query'] or ''}"


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        location = _dotted(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            message = "is not a known setting (check the spelling against config.example.toml)"
        elif kind == "missing":
            message = "is required"
        else:
            message = error["msg"]
            if location in SECRET_KEYS:
                pass  # a secret's value never goes to a terminal or a log
            elif "input" in error and kind not in ("model_type",):
                message += f" (got {error['input']!r})"
        lines.append(f"{location}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _dotted(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append("from" if item == "from_" else item)
    return ".".join(parts) or "(top level)"


def setting_keys(model: type[BaseModel] = Settings, prefix: str = "") -> set[str]:
    """Every dotted key a config file may set (used to keep config.example.toml complete)."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        if name == "path":
            continue
        key = info.alias or name
        annotation = info.annotation
        inner = getattr(annotation, "__args__", (None,))[0] if annotation is not None else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= setting_keys(annotation, f"{prefix}{key}.")
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            keys |= setting_keys(inner, f"{prefix}{key}[].")
        else:
            keys.add(f"{prefix}{key}")
    return keys
