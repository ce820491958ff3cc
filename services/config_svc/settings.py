"""config_svc's process settings, read once from the environment (the
deployment's settings are the domain's Settings, kept in the database)."""

from __future__ import annotations

from dataclasses import dataclass

from modelplane_server.runtime.env import Env, SettingsError, env_bool, env_float, env_int, env_list, env_str
from modelplane_server.runtime.metrics import metrics_listen_from_env
from modelplane_server.runtime.tls import ServerTLS, server_tls_from_env
from modelplane_server.runtime.tracing import TracingConfig, tracing_from_env
from modelplane_server.domain.base_url import parse_own_address

DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"


@dataclass(frozen=True)
class ConfigServiceSettings:
    database_url: str
    encryption_keys: str
    listen: str
    own_addresses: tuple[str, ...]
    allow_metadata_addresses: bool
    aws_region: str | None
    db_pool_size: int
    log_level: str
    # Defaults below are for code that builds ConfigServiceSettings directly
    # (tests): no TLS, no metrics port. The environment's defaults are in from_env.
    tls: ServerTLS | None = None
    metrics_listen: str = ""
    shutdown_grace_seconds: float = 10.0
    # Keepalive pings from clients (resolvers ping every
    # RESOLVER_CONFIG_KEEPALIVE_SECONDS) are accepted this often; more often
    # is answered with GOAWAY too_many_pings.
    keepalive_min_ping_interval_seconds: float = 5.0
    # A quiet WatchConfig stream sends its current revision this often;
    # resolvers reconnect when they hear nothing for
    # RESOLVER_CONFIG_WATCH_IDLE_SECONDS (default three heartbeats).
    watch_heartbeat_seconds: float = 10.0
    # config_svc pings its clients (HTTP/2 keepalive), so a resolver that died
    # without closing its connection (host gone, frozen, network cut) ends its
    # watch stream after keepalive + timeout seconds.
    keepalive_seconds: float = 10.0
    keepalive_timeout_seconds: float = 5.0
    # A resolver not heard from (acks, every RESOLVER_ACK_INTERVAL_SECONDS)
    # for this long is dropped from the live map.
    resolver_expiry_seconds: float = 30.0
    # None: no tracing (runtime.tracing; on when OTEL_EXPORTER_OTLP_* is set).
    tracing: TracingConfig | None = None

    def __repr__(self) -> str:
        # The dataclass repr would print the DSN (it may hold a password) and the keyring.
        return (f"ConfigServiceSettings(listen={self.listen!r}, metrics_listen={self.metrics_listen!r}, "
                f"tls={self.tls!r}, ...)")

    @classmethod
    def from_env(cls, env: Env) -> "ConfigServiceSettings":
        listen = env_str(env, "CONFIG_SVC_LISTEN", "127.0.0.1:50051", "host:port config_svc serves gRPC on")
        own = env_list(env, "MODELPLANE_OWN_ADDRESSES", [],
                       "Addresses (host:port or URL) where modelplane itself is reachable; provider base "
                       "URLs pointing at them are refused. The listen addresses are always included")
        resolver = env_str(env, "RESOLVER_SVC_LISTEN", "127.0.0.1:50052", "host:port resolver_svc serves gRPC on")
        addresses = tuple(dict.fromkeys([listen, resolver, *own]))
        for entry in addresses:
            try:
                parse_own_address(entry)
            except ValueError as exc:
                raise SettingsError(f"MODELPLANE_OWN_ADDRESSES: {entry!r} is not host, host:port or a URL "
                                    f"({exc})") from None
        return cls(
            database_url=env_str(env, "DATABASE_URL", None, "Postgres DSN, e.g. postgresql://user@host/db",
                                 secret=True),
            encryption_keys=env_str(env, "MODELPLANE_ENCRYPTION_KEYS", None,
                                    "Keyring: comma-separated keyid:base64(32 bytes); the first encrypts, "
                                    "all decrypt", secret=True),
            listen=listen,
            own_addresses=addresses,
            allow_metadata_addresses=env_bool(env, "MODELPLANE_ALLOW_METADATA_ADDRESSES", False,
                                              "Allow provider base URLs on cloud metadata addresses"),
            aws_region=_aws_region(env),
            db_pool_size=env_int(env, "CONFIG_SVC_DB_POOL_SIZE", 10, "Postgres connections per process",
                                 minimum=1, maximum=200),
            log_level=_log_level(env),
            tls=server_tls_from_env(env, "CONFIG_SVC"),
            metrics_listen=metrics_listen_from_env(env, "CONFIG_SVC_METRICS_LISTEN", DEFAULT_METRICS_LISTEN),
            shutdown_grace_seconds=env_float(
                env, "CONFIG_SVC_SHUTDOWN_GRACE_SECONDS", 10.0,
                "On SIGTERM, how long in-flight calls may take to finish before they are cancelled "
                "(WatchConfig streams are ended at once; resolvers reconnect)", minimum=0.0),
            keepalive_min_ping_interval_seconds=env_float(
                env, "CONFIG_SVC_KEEPALIVE_MIN_PING_INTERVAL_SECONDS", 5.0,
                "Shortest interval between HTTP/2 keepalive pings config_svc accepts from a client; keep it at "
                "or below the resolvers' RESOLVER_CONFIG_KEEPALIVE_SECONDS, or config_svc drops their "
                "connections (GOAWAY too_many_pings)", minimum=0.01),
            watch_heartbeat_seconds=env_float(
                env, "CONFIG_SVC_WATCH_HEARTBEAT_SECONDS", 10.0,
                "A WatchConfig stream with no change for this long sends an event with only the current "
                "revision, so resolvers can tell a quiet stream from a dead one; keep it well below the "
                "resolvers' RESOLVER_CONFIG_WATCH_IDLE_SECONDS", minimum=0.01),
            keepalive_seconds=env_float(
                env, "CONFIG_SVC_KEEPALIVE_SECONDS", 10.0,
                "How often config_svc pings its clients (HTTP/2 keepalive), so the watch stream of a resolver "
                "that died without closing its connection ends and it is shown as not watching", minimum=0.1),
            keepalive_timeout_seconds=env_float(
                env, "CONFIG_SVC_KEEPALIVE_TIMEOUT_SECONDS", 5.0,
                "How long such a ping may go unanswered before config_svc drops the connection", minimum=0.1),
            resolver_expiry_seconds=env_float(
                env, "CONFIG_SVC_RESOLVER_EXPIRY_SECONDS", 30.0,
                "A resolver not heard from (its acks, every RESOLVER_ACK_INTERVAL_SECONDS) for this long is "
                "dead: ListResolvers and `modelplane status` no longer show it", minimum=1.0),
            tracing=tracing_from_env(env, "config_svc"),
        )


def _aws_region(env: Env) -> str | None:
    """botocore's order, so config_svc shows the region resolver_svc calls."""
    region = env_str(env, "AWS_REGION", "", "Default AWS region for bedrock providers without their own")
    fallback = env_str(env, "AWS_DEFAULT_REGION", "",
                       "Default AWS region when AWS_REGION is unset (the AWS SDKs' order)")
    return region or fallback or None


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(env: Env) -> str:
    level = env_str(env, "LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR").upper()
    if level not in _LOG_LEVELS and not env.describe_only:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {level!r}")
    return level
