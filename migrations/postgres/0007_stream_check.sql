-- Every event names a stream the ledger holds: checked once per statement
-- rather than once per row (docs/adr/0006-stream-check.md).
--
-- The foreign key events.stream → streams ran one query per inserted row,
-- and each walked the chain of versions the append's own transaction had
-- left on that stream's row: on a bulk append that was nearly half of the
-- server's time. It gives way to what it guaranteed, kept by triggers:
-- * after each statement inserting events (into the parent or straight into
--   a partition), the streams its rows name are looked up in one query, each
--   once: a row naming a stream not held makes the statement fail;
-- * a stream row is never removed or renamed (its head moves; its name, which
--   the events name, does not).

CREATE FUNCTION bondledger_check_event_streams() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing TEXT;
BEGIN
    -- A statement's events name few streams: each is looked up once.
    SELECT inserted.stream INTO missing
    FROM (SELECT DISTINCT stream FROM inserted_events) AS inserted
    WHERE NOT EXISTS (SELECT 1 FROM streams WHERE streams.stream = inserted.stream)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'bondledger: an event names stream %, which the ledger does not hold', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

-- A statement on a partition does not fire its parent's statement triggers:
-- the parent and each partition get this one.
CREATE FUNCTION bondledger_check_streams_of(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE TRIGGER check_streams AFTER INSERT ON %s REFERENCING NEW TABLE AS inserted_events FOR EACH STATEMENT EXECUTE FUNCTION bondledger_check_event_streams()',
        target);
END;
$$;

SELECT bondledger_check_streams_of(relid) FROM pg_partition_tree('events');

-- Partitions made from now on get the check as they are made.
CREATE OR REPLACE FUNCTION bondledger_create_partition(parent TEXT, first_position BIGINT, end_position BIGINT)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    partition_name TEXT := parent || '_from_' || first_position;
BEGIN
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
                       partition_name, parent, first_position, end_position);
    EXCEPTION WHEN duplicate_table OR invalid_object_definition THEN
        -- Made meanwhile, or the range is already held by a partition made by hand.
        RETURN;
    END;
    IF parent = 'events' THEN
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (stream, version)',
                       partition_name || '_stream_version', partition_name);
        PERFORM bondledger_refuse_changes_of(partition_name::regclass);
        PERFORM bondledger_check_streams_of(partition_name::regclass);
    END IF;
END;
$$;

CREATE FUNCTION bondledger_refuse_stream_removal() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bondledger: a stream is never removed or renamed (the events naming it are append-only); % is refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER streams_refuse_delete BEFORE DELETE ON streams
    FOR EACH STATEMENT EXECUTE FUNCTION bondledger_refuse_stream_removal();
CREATE TRIGGER streams_refuse_truncate BEFORE TRUNCATE ON streams
    FOR EACH STATEMENT EXECUTE FUNCTION bondledger_refuse_stream_removal();
CREATE TRIGGER streams_refuse_rename BEFORE UPDATE OF stream ON streams
    FOR EACH ROW WHEN (OLD.stream IS DISTINCT FROM NEW.stream)
    EXECUTE FUNCTION bondledger_refuse_stream_removal();

-- Dropping the parent's foreign key drops its partitions' copies; a legacy
-- partition may still carry its own from before it was attached.
DO $$
DECLARE
    found RECORD;
BEGIN
    FOR found IN
        SELECT conname, conrelid::regclass AS target FROM pg_constraint
        WHERE contype = 'f' AND confrelid = 'streams'::regclass AND conparentid = 0
          AND conrelid IN (SELECT relid FROM pg_partition_tree('events'))
        ORDER BY conrelid = 'events'::regclass DESC
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', found.target, found.conname);
    END LOOP;
END;
$$;
