-- The event log. Events are only ever inserted: the triggers below refuse UPDATE and
-- DELETE for everyone, and the hash chain (stored in `hash`) finds what gets past them.

-- One row: the ledger's last position and recorded time. Appends run under
-- BEGIN IMMEDIATE, one writer at a time; positions come from here, gapless.
CREATE TABLE ledger_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    position    INTEGER NOT NULL CHECK (position >= 0),
    recorded_at TEXT
) STRICT;

INSERT INTO ledger_head (id, position, recorded_at) VALUES (1, 0, NULL);

-- Each stream's version and last hash: optimistic concurrency and the chain's tip.
CREATE TABLE streams (
    stream    TEXT PRIMARY KEY,
    version   INTEGER NOT NULL CHECK (version >= 1),
    head_hash TEXT NOT NULL CHECK (length(head_hash) = 64)
) STRICT;

-- payload and metadata are canonical JSON text: the bytes hashed are the bytes stored.
-- business_date is YYYY-MM-DD; recorded_at is YYYY-MM-DDTHH:MM:SS.ffffffZ (sorts as time).
CREATE TABLE events (
    position       INTEGER PRIMARY KEY CHECK (position >= 1),
    event_id       TEXT NOT NULL UNIQUE CHECK (length(event_id) = 36),
    caller_id      TEXT UNIQUE CHECK (caller_id IS NULL OR length(caller_id) BETWEEN 1 AND 64),
    stream         TEXT NOT NULL REFERENCES streams (stream),
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_type     TEXT NOT NULL CHECK (length(event_type) >= 1),
    schema_version INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    business_date  TEXT NOT NULL CHECK (length(business_date) = 10),
    recorded_at    TEXT NOT NULL CHECK (length(recorded_at) = 27),
    hash           TEXT NOT NULL CHECK (length(hash) = 64),
    UNIQUE (stream, version)
) STRICT;

CREATE INDEX events_business_date ON events (business_date);
CREATE INDEX events_recorded_at ON events (recorded_at);

CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'bondledger: the events table is append-only; UPDATE is refused');
END;

CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'bondledger: the events table is append-only; DELETE is refused');
END;
