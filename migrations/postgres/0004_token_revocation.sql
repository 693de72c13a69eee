-- A token can be revoked: from that moment it signs nothing in. The row stays,
-- so the events a token appended still name a token the ledger can show.

ALTER TABLE access_tokens ADD COLUMN revoked_at TEXT;
