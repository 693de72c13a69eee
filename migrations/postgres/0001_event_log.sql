-- The event log. Events are only ever inserted: the triggers below refuse UPDATE,
-- DELETE and TRUNCATE for everyone, and the hash chain (stored in `hash`) finds what
-- gets past them (a superuser can still disable triggers).

-- One row: the ledger's last position and recorded time. Every append updates it
-- inside its transaction, so its row lock queues appenders until commit and positions
-- come out gapless and in commit order (docs/adr/0001-serialized-appends.md).
CREATE TABLE ledger_head (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    position    BIGINT NOT NULL CHECK (position >= 0),
    recorded_at TIMESTAMPTZ
);

INSERT INTO ledger_head (id, position, recorded_at) VALUES (1, 0, NULL);

-- Each stream's version and last hash: optimistic concurrency and the chain's tip.
CREATE TABLE streams (
    stream    TEXT PRIMARY KEY,
    version   BIGINT NOT NULL CHECK (version >= 1),
    head_hash TEXT NOT NULL CHECK (char_length(head_hash) = 64)
);

-- payload and metadata are canonical JSON text (not jsonb, which would reorder it):
-- the bytes hashed are the bytes stored.
CREATE TABLE events (
    position       BIGINT PRIMARY KEY CHECK (position >= 1),
    event_id       UUID NOT NULL UNIQUE,
    caller_id      TEXT UNIQUE CHECK (caller_id IS NULL OR char_length(caller_id) BETWEEN 1 AND 64),
    stream         TEXT NOT NULL REFERENCES streams (stream),
    version        BIGINT NOT NULL CHECK (version >= 1),
    event_type     TEXT NOT NULL CHECK (event_type <> ''),
    schema_version INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    business_date  DATE NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    hash           TEXT NOT NULL CHECK (char_length(hash) = 64),
    UNIQUE (stream, version)
);

CREATE INDEX events_business_date ON events (business_date);
CREATE INDEX events_recorded_at ON events (recorded_at);

CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bondledger: the events table is append-only; % is refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

-- Statement triggers: they refuse even an UPDATE or DELETE that matches no row.
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
