-- An append's first statement ends with this check (docs/adr/0008-presumed-appends.md).
-- The statement locks the ledger head only where it still stands at the position the
-- append planned from, and writes nothing otherwise; the check then raises unless the
-- head and every stream the append extends moved on as planned, so that nothing of
-- the statement stands. An append under the lock never trips it. A presumed append
-- (planned on what its process last knew, with no read before its write) commits in
-- that one statement, so the statement must undo itself rather than leave it to the
-- client to roll back.

CREATE FUNCTION bondledger_append_stands(
    head_moved BIGINT,
    streams_moved BIGINT,
    streams_planned BIGINT
) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF head_moved <> 1 THEN
        RAISE EXCEPTION 'bondledger: the ledger head is not at the position the append planned from'
            USING ERRCODE = 'BL409';
    END IF;
    IF streams_moved <> streams_planned THEN
        RAISE EXCEPTION 'bondledger: % of % streams were at the version the append planned from',
            streams_moved, streams_planned
            USING ERRCODE = 'BL409';
    END IF;
    RETURN TRUE;
END;
$$;
