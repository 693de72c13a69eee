-- What an append reads before it plans, in one round trip: the ledger head
-- (locked until the transaction ends), then the events of the caller ids it
-- names and the heads of the streams it extends, read under that lock.
--
-- Each query of a volatile PL/pgSQL function takes its own snapshot, so the
-- two reads after the lock see every append committed before it was
-- granted (an appender's commit is visible before its lock is released).
-- Read as three statements, a small append spent more time on round trips
-- than on the reads themselves.
--
-- One row a thing read, told by `kind`: 'head' (position, recorded_at),
-- 'event' (every column of the event), 'stream' (stream, version, and the
-- stream's head hash as hash). Columns a kind does not use are NULL.

CREATE FUNCTION bondledger_append_reads(caller_ids TEXT[], stream_names TEXT[])
RETURNS TABLE (
    kind           TEXT,
    "position"     BIGINT,
    event_id       UUID,
    caller_id      TEXT,
    stream         TEXT,
    version        BIGINT,
    event_type     TEXT,
    schema_version INTEGER,
    payload        TEXT,
    metadata       TEXT,
    business_date  DATE,
    recorded_at    TIMESTAMPTZ,
    hash           TEXT
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    held BIGINT[];
BEGIN
    RETURN QUERY
        SELECT 'head'::TEXT, h.position, NULL::UUID, NULL::TEXT, NULL::TEXT, NULL::BIGINT,
               NULL::TEXT, NULL::INTEGER, NULL::TEXT, NULL::TEXT, NULL::DATE, h.recorded_at,
               NULL::TEXT
        FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
    -- Most ids an append names are new: the keys alone first, the events
    -- only for those found.
    SELECT array_agg(k.position) INTO held
    FROM event_keys k WHERE k.caller_id = ANY(caller_ids);
    IF held IS NOT NULL THEN
        RETURN QUERY
            SELECT 'event'::TEXT, e.position, e.event_id, e.caller_id, e.stream, e.version,
                   e.event_type, e.schema_version, e.payload, e.metadata, e.business_date,
                   e.recorded_at, e.hash
            FROM events e WHERE e.position = ANY(held);
    END IF;
    RETURN QUERY
        SELECT 'stream'::TEXT, NULL::BIGINT, NULL::UUID, NULL::TEXT, s.stream, s.version,
               NULL::TEXT, NULL::INTEGER, NULL::TEXT, NULL::TEXT, NULL::DATE,
               NULL::TIMESTAMPTZ, s.head_hash
        FROM streams s WHERE s.stream = ANY(stream_names);
END;
$$;
