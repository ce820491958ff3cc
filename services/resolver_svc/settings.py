"""resolver_svc process settings, read once from the environment.

ResolverSettings, not Settings: modelplane_server.domain.types.Settings is
the deployment's (BYOK, personal overrides) that config_svc pushes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from modelplane_server.runtime.env import Env, SettingsError, env_bool, env_float, env_int, env_list, env_str
from modelplane_server.runtime.metrics import metrics_listen_from_env, split_listen
from modelplane_server.runtime.tls import ClientTLS, ServerTLS, client_tls_from_env, server_tls_from_env
from modelplane_server.runtime.tracing import TracingConfig, tracing_from_env
from modelplane_server.runtime.workers import available_cores
from modelplane_server.runtime.workers import supported as workers_supported

DEFAULT_METRICS_LISTEN = "127.0.0.1:9465"


MIB = 1024 * 1024


@dataclass(frozen=True)
class ResolverSettings:
    config_svc_address: str
    service_token: str
    listen: str
    config_call_timeout_seconds: float
    user_cache_size: int
    token_cache_size: int
    token_ttl_seconds: float
    credential_cache_size: int
    credential_ttl_seconds: float
    stale_if_unavailable_seconds: float
    reconnect_initial_seconds: float
    reconnect_max_seconds: float
    ambient_aws: bool
    ambient_aws_refresh_seconds: float
    log_level: str
    stream_idle_timeout_seconds: float = 60.0
    upstream_max_connections: int = 1000
    upstream_http2: bool = False
    # Defaults below are for code that builds ResolverSettings directly (tests): no
    # TLS, no metrics port. The environment's defaults are in from_env.
    tls: ServerTLS | None = None
    config_tls: ClientTLS | None = None
    metrics_listen: str = ""
    shutdown_grace_seconds: float = 25.0
    # HTTP/2 keepalive on the channel to config_svc: a config_svc that stops
    # answering (hung, frozen, half-open connection) fails the watch after
    # keepalive + timeout seconds instead of leaving it open and silent.
    config_keepalive_seconds: float = 10.0
    config_keepalive_timeout_seconds: float = 5.0
    # config_svc sends a heartbeat on a quiet watch every 10 s
    # (CONFIG_SVC_WATCH_HEARTBEAT_SECONDS); this much silence means the
    # stream is dead even where keepalive cannot tell (a gRPC proxy between).
    # 0: never.
    config_watch_idle_seconds: float = 30.0
    # Several config_svc replicas to watch one of and fail over between
    # (RESOLVER_CONFIG_SVC_ADDRESSES); empty: config_svc_address alone.
    config_svc_addresses: tuple[str, ...] = ()
    # A call asking for a min_revision not yet applied waits at most this long
    # (less when its deadline is nearer), then fails REVISION_NOT_REACHED.
    min_revision_max_wait_seconds: float = 5.0
    # How often the resolver tells config_svc what it applied when nothing
    # changes (its heartbeat in the live map of resolvers).
    ack_interval_seconds: float = 5.0

    @property
    def config_addresses(self) -> tuple[str, ...]:
        """Every config_svc address the resolver may watch."""
        return self.config_svc_addresses or (self.config_svc_address,)
    # None: no tracing (runtime.tracing; on when OTEL_EXPORTER_OTLP_* is set).
    tracing: TracingConfig | None = None
    # Memory budgets (bytes, estimated) of the caches; entries bound them too.
    user_cache_bytes: int = 64 * MIB
    answer_memo_bytes: int = 64 * MIB
    token_cache_bytes: int = 64 * MIB
    credential_cache_bytes: int = 4 * MIB
    # Resolver processes of one start (RESOLVER_SVC_WORKERS, 0 read as the
    # cores available); 1: a single process, no supervisor.
    workers: int = 1
    # Set in the workers of a worker-mode start (runtime.workers), never from
    # the environment: listen with SO_REUSEPORT on the port they share.
    share_port: bool = False
    # The usage ledger (resolver_svc.usage.ledger): buffer bound, batch size,
    # how long a record waits for its batch, and how long shutdown may take
    # to deliver what is left.
    ledger_buffer_records: int = 50_000
    ledger_batch_records: int = 200
    ledger_flush_interval_seconds: float = 0.25
    ledger_drain_seconds: float = 10.0

    def __repr__(self) -> str:
        # The dataclass repr would print the service token.
        return f"ResolverSettings(config_addresses={self.config_addresses!r}, listen={self.listen!r}, ...)"

    @classmethod
    def from_env(cls, env: Env) -> "ResolverSettings":
        settings = cls(
            config_svc_address=env_str(env, "CONFIG_SVC_ADDRESS", "127.0.0.1:50051",
                                       "host:port of config_svc (WatchConfig, GetUserConfig, ...)"),
            service_token=env_str(env, "RESOLVER_SERVICE_TOKEN", None,
                                  "Bearer token with the service role the resolver presents to config_svc",
                                  secret=True),
            listen=env_str(env, "RESOLVER_SVC_LISTEN", "127.0.0.1:50052", "host:port resolver_svc serves gRPC on"),
            config_call_timeout_seconds=env_float(
                env, "RESOLVER_CONFIG_CALL_TIMEOUT_SECONDS", 5.0,
                "Deadline of each unary call to config_svc (user data, token checks, credentials)", minimum=0.1),
            user_cache_size=env_int(env, "RESOLVER_USER_CACHE_SIZE", 100_000,
                                    "Users whose overrides and key list are kept in memory (LRU)", minimum=1),
            token_cache_size=env_int(env, "RESOLVER_TOKEN_CACHE_SIZE", 100_000,
                                     "Verified caller tokens kept in memory (LRU)", minimum=1),
            token_ttl_seconds=env_float(env, "RESOLVER_TOKEN_TTL_SECONDS", 300.0,
                                        "How long a verified caller token is trusted before it is checked "
                                        "again (revocations arrive at once through the watch)", minimum=0.0),
            credential_cache_size=env_int(env, "RESOLVER_CREDENTIAL_CACHE_SIZE", 1_000,
                                          "Plaintext credentials kept in memory (LRU)", minimum=1),
            credential_ttl_seconds=env_float(env, "RESOLVER_CREDENTIAL_TTL_SECONDS", 60.0,
                                             "How long a plaintext credential is kept before it is fetched again",
                                             minimum=0.0),
            stale_if_unavailable_seconds=env_float(
                env, "RESOLVER_STALE_IF_UNAVAILABLE_SECONDS", 900.0,
                "While config_svc is unreachable, expired token verifications and credentials this much "
                "past their TTL are still used (static stability); 0 turns that off", minimum=0.0),
            reconnect_initial_seconds=env_float(env, "RESOLVER_RECONNECT_INITIAL_SECONDS", 0.2,
                                                "First delay before re-opening the config watch", minimum=0.01),
            reconnect_max_seconds=env_float(env, "RESOLVER_RECONNECT_MAX_SECONDS", 10.0,
                                            "Longest delay between config watch reconnects", minimum=0.01),
            ambient_aws=env_bool(env, "RESOLVER_AMBIENT_AWS", True,
                                 "Look for ambient AWS credentials (bedrock providers without a key) with "
                                 "botocore's standard chain; off treats them as absent"),
            ambient_aws_refresh_seconds=env_float(env, "RESOLVER_AMBIENT_AWS_REFRESH_SECONDS", 300.0,
                                                  "How often the ambient AWS check runs again", minimum=1.0),
            log_level=env_str(env, "LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
            stream_idle_timeout_seconds=env_float(
                env, "RESOLVER_STREAM_IDLE_TIMEOUT_SECONDS", 60.0,
                "A StreamChat whose upstream sends nothing for this long ends with UPSTREAM_TIMEOUT", minimum=0.1),
            upstream_max_connections=env_int(env, "RESOLVER_UPSTREAM_MAX_CONNECTIONS", 1000,
                                             "Pooled HTTP connections per upstream origin", minimum=1),
            upstream_http2=env_bool(env, "RESOLVER_UPSTREAM_HTTP2", False,
                                    "Offer HTTP/2 to https upstreams (ALPN); see docs/operations.md before "
                                    "turning it on"),
            tls=server_tls_from_env(env, "RESOLVER_SVC"),
            config_tls=client_tls_from_env(env, "RESOLVER_CONFIG_SVC", "config_svc"),
            metrics_listen=metrics_listen_from_env(env, "RESOLVER_SVC_METRICS_LISTEN", DEFAULT_METRICS_LISTEN),
            shutdown_grace_seconds=env_float(
                env, "RESOLVER_SVC_SHUTDOWN_GRACE_SECONDS", 25.0,
                "On SIGTERM, how long in-flight calls and chat streams may take to finish before they are "
                "cancelled", minimum=0.0),
            config_keepalive_seconds=env_float(
                env, "RESOLVER_CONFIG_KEEPALIVE_SECONDS", 10.0,
                "How often the resolver pings config_svc (HTTP/2 keepalive) to notice a hung config_svc or a "
                "dead connection under the config watch; config_svc must accept pings this often "
                "(CONFIG_SVC_KEEPALIVE_MIN_PING_INTERVAL_SECONDS)", minimum=0.1),
            config_keepalive_timeout_seconds=env_float(
                env, "RESOLVER_CONFIG_KEEPALIVE_TIMEOUT_SECONDS", 5.0,
                "How long a keepalive ping may go unanswered before the connection to config_svc is "
                "dropped and the config watch reconnects (the snapshot lag then rises)", minimum=0.1),
            config_watch_idle_seconds=env_float(
                env, "RESOLVER_CONFIG_WATCH_IDLE_SECONDS", 30.0,
                "A config watch that delivers nothing (not even config_svc's heartbeat, every "
                "CONFIG_SVC_WATCH_HEARTBEAT_SECONDS) for this long is treated as lost and reopened; "
                "0 never does", minimum=0.0),
            config_svc_addresses=tuple(env_list(
                env, "RESOLVER_CONFIG_SVC_ADDRESSES", [],
                "Comma-separated host:port of several config_svc replicas (one database), instead of "
                "CONFIG_SVC_ADDRESS: the resolver watches one and, when it goes away, fails over to the next "
                "within a second and resumes from its revision; no load balancer needed")),
            min_revision_max_wait_seconds=env_float(
                env, "RESOLVER_MIN_REVISION_MAX_WAIT_SECONDS", 5.0,
                "A call asking for a min_revision this resolver has not applied yet waits at most this long "
                "(less when its deadline is nearer), then fails UNAVAILABLE REVISION_NOT_REACHED", minimum=0.0),
            ack_interval_seconds=env_float(
                env, "RESOLVER_ACK_INTERVAL_SECONDS", 5.0,
                "How often the resolver tells config_svc which revision it applied when nothing changes (after a "
                "change it does so at once): its heartbeat in the live map of resolvers; keep it well below "
                "config_svc's CONFIG_SVC_RESOLVER_EXPIRY_SECONDS", minimum=0.1),
            tracing=tracing_from_env(env, "resolver_svc"),
            user_cache_bytes=env_int(env, "RESOLVER_USER_CACHE_BYTES", 64 * MIB,
                                     "Memory budget of the user cache (estimated bytes; least recently used users "
                                     "go first when it or RESOLVER_USER_CACHE_SIZE is passed)", minimum=4096),
            answer_memo_bytes=env_int(env, "RESOLVER_ANSWER_MEMO_BYTES", 64 * MIB,
                                      "Memory budget of the memo of built ResolveModel / ListAvailableModels "
                                      "answers (estimated bytes; users with the same data share an answer)",
                                      minimum=4096),
            token_cache_bytes=env_int(env, "RESOLVER_TOKEN_CACHE_BYTES", 64 * MIB,
                                      "Memory budget of the verified caller token cache (estimated bytes)",
                                      minimum=4096),
            credential_cache_bytes=env_int(env, "RESOLVER_CREDENTIAL_CACHE_BYTES", 4 * MIB,
                                           "Memory budget of the plaintext credential cache (estimated bytes)",
                                           minimum=4096),
            ledger_buffer_records=env_int(
                env, "RESOLVER_LEDGER_BUFFER_RECORDS", 50_000,
                "Usage records kept in memory while config_svc cannot take them; when full the oldest are "
                "dropped (modelplane_usage_records_total{outcome=\"dropped\"})", minimum=1),
            ledger_batch_records=env_int(env, "RESOLVER_LEDGER_BATCH_RECORDS", 200,
                                         "Usage records per RecordUsage call (at most 1000)", minimum=1,
                                         maximum=1000),
            ledger_flush_interval_seconds=env_float(
                env, "RESOLVER_LEDGER_FLUSH_INTERVAL_SECONDS", 0.25,
                "Longest time a usage record waits for its batch; also what a crash may lose", minimum=0.01),
            ledger_drain_seconds=env_float(
                env, "RESOLVER_LEDGER_DRAIN_SECONDS", 10.0,
                "On SIGTERM, after in-flight chats end, how long the resolver keeps trying to deliver its "
                "buffered usage records", minimum=0.0),
        )
        workers = env_int(env, "RESOLVER_SVC_WORKERS", 0,
                          "Resolver processes sharing RESOLVER_SVC_LISTEN (Linux), each with its own config watch, "
                          "caches and metrics port (RESOLVER_SVC_METRICS_LISTEN's port + its index), under one "
                          "supervising parent; 0: one per CPU core this process may use; 1: a single process, "
                          "no parent", minimum=0, maximum=256)
        if workers > 1 and not workers_supported():
            raise SettingsError("RESOLVER_SVC_WORKERS above 1 needs Linux (SO_REUSEPORT, PR_SET_PDEATHSIG)")
        settings = replace(settings, workers=workers or (available_cores() if workers_supported() else 1))
        if settings.workers > 1 and not env.describe_only:
            try:
                split_listen(settings.listen)
            except ValueError:
                raise SettingsError(f"RESOLVER_SVC_WORKERS={settings.workers} needs RESOLVER_SVC_LISTEN as "
                                    f"host:port, got {settings.listen!r}") from None
        if settings.reconnect_max_seconds < settings.reconnect_initial_seconds:
            raise SettingsError("RESOLVER_RECONNECT_MAX_SECONDS must be at least RESOLVER_RECONNECT_INITIAL_SECONDS")
        if settings.config_svc_addresses and not env.describe_only and env.raw("CONFIG_SVC_ADDRESS"):
            raise SettingsError("CONFIG_SVC_ADDRESS and RESOLVER_CONFIG_SVC_ADDRESSES are both set; set only one "
                                "(RESOLVER_CONFIG_SVC_ADDRESSES may list a single address)")
        return settings
