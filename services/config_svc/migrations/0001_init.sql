-- modelplane schema, version 1.
-- Secrets are stored only as AES-256-GCM ciphertexts with the id of the key
-- that sealed them; tokens only as hashes.

-- One row: the configuration revision. Every write transaction bumps it
-- first, which also serialises writers, so revisions commit in order.
CREATE TABLE config_revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision  bigint NOT NULL
);
INSERT INTO config_revision (revision) VALUES (0);

CREATE TABLE settings (
    singleton                  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    byok_enabled               boolean NOT NULL DEFAULT false,
    personal_overrides_enabled boolean NOT NULL DEFAULT false,
    version                    bigint NOT NULL DEFAULT 1,
    update_time                timestamptz NOT NULL DEFAULT now()
);
INSERT INTO settings DEFAULT VALUES;

CREATE TABLE providers (
    name                 text PRIMARY KEY CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 63),
    type                 text NOT NULL CHECK (type IN ('anthropic', 'openai', 'google', 'azure-openai',
                                 'bedrock', 'openai-compatible', 'openrouter', 'vercel-ai-gateway')),
    display_name         text NOT NULL DEFAULT '',
    base_url             text NOT NULL DEFAULT '',
    enabled              boolean NOT NULL DEFAULT true,
    central_key_enabled  boolean NOT NULL DEFAULT true,
    allow_user_keys      boolean NOT NULL DEFAULT true,
    central_key_fallback boolean NOT NULL DEFAULT true,
    region               text NOT NULL DEFAULT '',
    api_key_key_id       text,
    api_key_ciphertext   bytea,
    version              bigint NOT NULL DEFAULT 1,
    create_time          timestamptz NOT NULL DEFAULT now(),
    update_time          timestamptz NOT NULL DEFAULT now(),
    CHECK ((api_key_key_id IS NULL) = (api_key_ciphertext IS NULL)),
    CHECK (central_key_enabled OR allow_user_keys),
    CHECK (NOT central_key_fallback OR (central_key_enabled AND allow_user_keys))
);

CREATE TABLE models (
    name                    text PRIMARY KEY CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 63),
    provider                text NOT NULL REFERENCES providers (name) ON DELETE RESTRICT,
    model_identifier        text NOT NULL CHECK (model_identifier <> ''),
    display_name            text NOT NULL CHECK (display_name <> ''),
    context_limit           bigint NOT NULL CHECK (context_limit > 0),
    enabled                 boolean NOT NULL DEFAULT true,
    is_default              boolean NOT NULL DEFAULT false,
    options                 jsonb NOT NULL DEFAULT '{}',
    pricing                 jsonb NOT NULL DEFAULT '{}',
    provider_options_family text,
    provider_options        jsonb NOT NULL DEFAULT '{}',
    version                 bigint NOT NULL DEFAULT 1,
    create_time             timestamptz NOT NULL DEFAULT now(),
    update_time             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX models_by_provider ON models (provider, name);
-- The star: at most one default model, enforced by the database.
CREATE UNIQUE INDEX models_single_default ON models ((true)) WHERE is_default;

-- Overrides name models without a foreign key on purpose: deleting a model
-- must not break them; resolution skips a missing model and falls through.
CREATE TABLE model_overrides (
    context     text PRIMARY KEY CHECK (context IN ('general', 'explore', 'title_generation')),
    model       text NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE personal_overrides (
    user_name   text NOT NULL,
    context     text NOT NULL CHECK (context IN ('root', 'general', 'explore')),
    model       text NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, context)
);

CREATE TABLE user_keys (
    user_name   text NOT NULL,
    provider    text NOT NULL REFERENCES providers (name) ON DELETE CASCADE,
    key_id      text NOT NULL,
    ciphertext  bytea NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, provider)
);
CREATE INDEX user_keys_by_provider ON user_keys (provider);

CREATE TABLE api_tokens (
    id             text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('admin', 'member', 'service')),
    subject        text NOT NULL CHECK (subject <> ''),
    description    text NOT NULL DEFAULT '',
    secret_sha256  bytea NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    revoke_time    timestamptz,
    last_used_time timestamptz
);

CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    revision    bigint NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    resource    text NOT NULL,
    change      jsonb NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_by_resource ON audit_events (resource text_pattern_ops, id);

-- What changed at each revision, for WatchConfig resumption. Rows name the
-- changed entities; watchers read their current state.
CREATE TABLE config_changes (
    revision    bigint PRIMARY KEY,
    changes     jsonb NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);
