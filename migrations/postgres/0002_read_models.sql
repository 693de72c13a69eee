-- Read models: derived from the event log by projections, each with a
-- checkpoint saved in the same transaction as its rows. Unlike events they
-- are rewritten freely, and can always be rebuilt from position 0.

CREATE TABLE projection_checkpoints (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL CHECK (position >= 0)
);

-- One row a manual: what a dashboard lists.
CREATE TABLE rm_manuals (
    manual                TEXT PRIMARY KEY,
    trade_mode            TEXT NOT NULL,
    book                  TEXT NOT NULL,
    zone                  BIGINT NOT NULL,
    enterprise            TEXT NOT NULL,
    processing_enterprise TEXT NOT NULL,
    valid_until           TEXT NOT NULL,
    version               BIGINT NOT NULL,
    status                TEXT NOT NULL,
    closed                BIGINT NOT NULL,
    findings              BIGINT NOT NULL
);

CREATE INDEX rm_manuals_enterprise ON rm_manuals (enterprise);
CREATE INDEX rm_manuals_processing_enterprise ON rm_manuals (processing_enterprise);

-- Each material's balance now (the open period's, for an account book).
CREATE TABLE rm_balances (
    manual         TEXT NOT NULL,
    item           BIGINT NOT NULL,
    hs             TEXT NOT NULL,
    name           TEXT NOT NULL,
    unit           TEXT NOT NULL,
    balance        TEXT NOT NULL,
    at_contractors TEXT NOT NULL,
    PRIMARY KEY (manual, item)
);

-- Carry-over sides, for matching out with in by manual pair and batch.
CREATE TABLE rm_carryovers (
    manual              TEXT NOT NULL,
    event               TEXT NOT NULL,
    direction           TEXT NOT NULL,
    counterparty_manual TEXT NOT NULL,
    batch               TEXT,
    item                BIGINT NOT NULL,
    qty                 TEXT NOT NULL,
    business_date       TEXT NOT NULL,
    moved_on            TEXT NOT NULL,
    PRIMARY KEY (manual, event)
);

CREATE INDEX rm_carryovers_counterparty ON rm_carryovers (counterparty_manual);

-- What is due: report deadlines, expiries, carry-over declarations.
CREATE TABLE rm_deadlines (
    manual TEXT NOT NULL,
    kind   TEXT NOT NULL,
    event  TEXT NOT NULL,
    due    TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (manual, kind, event)
);

-- The investigator's index: one row an event, and its keys.
CREATE TABLE rm_timeline (
    position      BIGINT PRIMARY KEY,
    manual        TEXT NOT NULL,
    version       BIGINT NOT NULL,
    event_type    TEXT NOT NULL,
    business_date TEXT NOT NULL,
    declaration   TEXT
);

CREATE INDEX rm_timeline_manual ON rm_timeline (manual, position);
CREATE INDEX rm_timeline_declaration ON rm_timeline (declaration);
CREATE INDEX rm_timeline_business_date ON rm_timeline (business_date);

-- kind: 'hs' (registered HS code of an item moved or declared, or a
-- carry-over's hs) or 'counterparty' (an enterprise or manual named).
CREATE TABLE rm_timeline_keys (
    kind     TEXT NOT NULL,
    value    TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (kind, value, position)
);

-- Snapshots of manual state every so many events: a cache for time travel;
-- dropping them changes no answer.
CREATE TABLE snapshots (
    manual        TEXT NOT NULL,
    version       BIGINT NOT NULL,
    position      BIGINT NOT NULL,
    max_date      TEXT NOT NULL,
    recorded_at   TEXT NOT NULL,
    state         TEXT NOT NULL,
    PRIMARY KEY (manual, version)
);
