-- Access tokens of the HTTP API. A token's secret is shown once, when it is
-- made, and never stored: only the SHA-256 of the secret, as lowercase hex,
-- by which a request's token is looked up.

CREATE TABLE access_tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
    role       TEXT NOT NULL CHECK (role IN ('recorder', 'auditor', 'admin')),
    enterprise TEXT,
    label      TEXT,
    created_at TEXT NOT NULL,
    -- The enterprise whose manuals a recorder may touch; no other role has one.
    CHECK ((role = 'recorder') = (enterprise IS NOT NULL))
);
