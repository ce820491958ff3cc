-- The live map of resolvers, shared by every config_svc replica: one row per
-- resolver process that watches (or recently watched) the configuration.
-- Rows are written by the replica holding the resolver's watch stream
-- (session, config_svc, connect_time) and by the resolver's acks (which
-- revision it applied; heartbeat_time), and deleted once heartbeat_time is
-- older than CONFIG_SVC_RESOLVER_EXPIRY_SECONDS. Not configuration: writing
-- it bumps no revision.
CREATE TABLE resolvers (
    id               text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    host             text NOT NULL DEFAULT '',
    version          text NOT NULL DEFAULT '',
    applied_revision bigint NOT NULL DEFAULT 0 CHECK (applied_revision >= 0),
    epoch            text NOT NULL DEFAULT '',
    -- The open watch stream: its random id, the replica holding it (host:port)
    -- and when it opened; NULL / '' while none is open.
    session          text,
    config_svc       text NOT NULL DEFAULT '',
    connect_time     timestamptz,
    heartbeat_time   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resolvers_by_heartbeat ON resolvers (heartbeat_time);
