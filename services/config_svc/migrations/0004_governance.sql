-- Governance: deployment settings for spend, model access lists, groups,
-- spend limits, and the usage ledger with its roll-ups.

ALTER TABLE settings
    ADD COLUMN byok_spend_counts          boolean NOT NULL DEFAULT false,
    ADD COLUMN allow_unpriced_under_limit boolean NOT NULL DEFAULT true;

-- {"users": [...], "groups": [...]}; empty object: everyone may use the model.
-- Group names are not foreign keys: DeleteGroup refuses while a list names one.
ALTER TABLE models ADD COLUMN access jsonb NOT NULL DEFAULT '{}';

CREATE TABLE groups (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(name) <= 63),
    display_name text NOT NULL DEFAULT '',
    description  text NOT NULL DEFAULT '',
    version      bigint NOT NULL DEFAULT 1,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE group_members (
    group_name text NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    user_name  text NOT NULL,
    PRIMARY KEY (group_name, user_name)
);
CREATE INDEX group_members_by_user ON group_members (user_name);

-- scope 'default' has subject ''; 'group' and 'user' name one. NULL: unlimited
-- (overrides only). A group's limits are deleted with the group.
CREATE TABLE spend_limits (
    scope           text NOT NULL CHECK (scope IN ('default', 'group', 'user')),
    subject         text NOT NULL,
    period          text NOT NULL CHECK (period IN ('day', 'week', 'month')),
    limit_micro_usd bigint CHECK (limit_micro_usd >= 0),
    update_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, subject, period),
    CHECK ((scope = 'default') = (subject = '')),
    CHECK (scope <> 'default' OR limit_micro_usd IS NOT NULL)
);

-- One row per upstream chat, stored once per id (resolvers resend batches
-- after failures; ON CONFLICT DO NOTHING makes that harmless).
CREATE TABLE usage_records (
    id                     text PRIMARY KEY,
    request_id             text NOT NULL DEFAULT '',
    chat_id                text NOT NULL DEFAULT '',
    user_name              text NOT NULL,
    service                text NOT NULL DEFAULT '',
    provider               text NOT NULL,
    model                  text NOT NULL,
    model_identifier       text NOT NULL DEFAULT '',
    context                text,
    credential_source      text NOT NULL CHECK (credential_source IN ('user_key', 'central_key', 'ambient_aws')),
    input_tokens           bigint NOT NULL,
    cache_read_tokens      bigint NOT NULL,
    cache_write_tokens     bigint NOT NULL,
    output_tokens          bigint NOT NULL,
    reasoning_tokens       bigint NOT NULL,
    cost_micro_usd         bigint,
    upstream_latency_ms    integer NOT NULL,
    time_to_first_token_ms integer,
    outcome                text NOT NULL CHECK (outcome IN ('finished', 'failed', 'cancelled')),
    streamed               boolean NOT NULL,
    start_time             timestamptz,
    end_time               timestamptz NOT NULL,
    recorded_at            timestamptz NOT NULL DEFAULT now()
);
-- Summaries read records only for the partial days at the edges of a range.
CREATE INDEX usage_records_by_end ON usage_records (end_time);
CREATE INDEX usage_records_by_user ON usage_records (user_name, end_time);

-- Per UTC day x user x model x provider x credential source, maintained in
-- the transaction that inserts the records: summaries over whole days read
-- these, never the records.
CREATE TABLE usage_daily (
    day                date NOT NULL,
    user_name          text NOT NULL,
    model              text NOT NULL,
    provider           text NOT NULL,
    credential_source  text NOT NULL,
    requests           bigint NOT NULL,
    unpriced_requests  bigint NOT NULL,
    input_tokens       bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    reasoning_tokens   bigint NOT NULL,
    cost_micro_usd     bigint NOT NULL,
    PRIMARY KEY (day, user_name, model, provider, credential_source)
);
CREATE INDEX usage_daily_by_user ON usage_daily (user_name, day);

-- Each user's spend per period (day, week, month) as running totals, also
-- maintained in the inserting transaction: the row lock orders concurrent
-- batches of one user, so every total pushed to resolvers includes all
-- earlier ones.
CREATE TABLE usage_spend (
    user_name         text NOT NULL,
    period            text NOT NULL CHECK (period IN ('day', 'week', 'month')),
    period_start      timestamptz NOT NULL,
    central_micro_usd bigint NOT NULL DEFAULT 0,
    own_key_micro_usd bigint NOT NULL DEFAULT 0,
    unpriced_requests bigint NOT NULL DEFAULT 0,
    update_time       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, period, period_start)
);
CREATE INDEX usage_spend_by_start ON usage_spend (period_start);
CREATE INDEX usage_spend_by_update ON usage_spend (update_time);
