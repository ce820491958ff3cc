-- A random id for this configuration history. WatchConfig's epoch is the
-- database's OID joined with it: a restore into a new database (the
-- documented procedure) gets a new OID, so resolvers holding revisions of
-- the old history take a fresh snapshot instead of resuming into the new one.
-- gen_random_uuid() is built in from Postgres 13.
ALTER TABLE config_revision ADD COLUMN epoch_id text NOT NULL DEFAULT gen_random_uuid()::text;
