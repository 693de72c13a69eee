-- The event log and its largest read models (rm_timeline, rm_timeline_keys)
-- become tables partitioned by range of ledger position
-- (docs/adr/0003-partitioning.md). A partition holds a run of positions that
-- never changes once the head has passed it: old partitions are cold, and
-- each index is as deep as one partition's, not the whole log's.
--
-- The existing tables keep every row: each is renamed to `<table>_legacy` and
-- attached as the first partition, holding every position below the first
-- multiple of the width above the last event (+ 1). Partitions after it are
-- `<table>_from_<first position>`, `width` positions each, made by
-- bondledger_ensure_event_partitions before an append needs them. There is
-- no DEFAULT partition: a row with no partition is an error, never a row in
-- a catch-all that would have to be moved later.
--
-- Uniqueness. A unique index on a partitioned table must hold the partition
-- key, so:
-- * position is the primary key, as before;
-- * event_id and caller_id (the idempotency key) are unique in `event_keys`,
--   an append-only side table written with every event in the same
--   statement; lookups by caller id go through it to one partition;
-- * (stream, version) is unique within each partition by its own index, and
--   across partitions by the `streams` row: every append reads it under the
--   ledger_head lock and moves it with `WHERE version = previous`, so two
--   events of one stream can never take the same version.

-- One row: how many positions a new partition holds, and the first position
-- no partition holds yet. A test database may lower `width`; the ledger's
-- default is 1,000,000.
CREATE TABLE event_partitioning (
    id             SMALLINT PRIMARY KEY CHECK (id = 1),
    width          BIGINT NOT NULL CHECK (width >= 1),
    partitions_end BIGINT NOT NULL CHECK (partitions_end >= 1)
);

CREATE FUNCTION bondledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bondledger: % is append-only; % is refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

-- Statement triggers on one table: they refuse even a statement that matches
-- no row. A statement on a partitioned table fires its own statement
-- triggers, not its partitions', so each partition gets these too.
CREATE FUNCTION bondledger_refuse_changes_of(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    operation TEXT;
BEGIN
    FOREACH operation IN ARRAY ARRAY['UPDATE', 'DELETE', 'TRUNCATE'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER %I BEFORE %s ON %s FOR EACH STATEMENT EXECUTE FUNCTION bondledger_refuse_change()',
            'refuse_' || lower(operation), operation, target);
    END LOOP;
END;
$$;

-- Makes the partition of `parent` for positions [first_position, end_position)
-- and what each partition of it carries besides the parent's own indexes and
-- row triggers. Safe when another process made it first.
CREATE FUNCTION bondledger_create_partition(parent TEXT, first_position BIGINT, end_position BIGINT)
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
    END IF;
END;
$$;

-- Makes sure every position up to `upto` has its partition in the event log
-- and in the timeline read models; returns the first position that has none.
-- It takes the append lock (the ledger_head row) first, as every append does
-- before it touches `streams` or `events`, which a new partition locks: a
-- caller outside an append cannot hold a lock an append waits for while it
-- waits for one the append holds. Two callers take turns; the second finds
-- the partitions made. At most 1,000 partitions a call: a larger `upto` is a bug.
CREATE FUNCTION bondledger_ensure_event_partitions(upto BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    settings       event_partitioning%ROWTYPE;
    first_position BIGINT;
    made           INTEGER := 0;
BEGIN
    PERFORM 1 FROM ledger_head WHERE id = 1 FOR UPDATE;
    SELECT * INTO STRICT settings FROM event_partitioning WHERE id = 1 FOR UPDATE;
    first_position := settings.partitions_end;
    WHILE first_position <= upto LOOP
        IF made = 1000 THEN
            RAISE EXCEPTION 'bondledger: position % is more than 1,000 partitions past the last', upto;
        END IF;
        PERFORM bondledger_create_partition('events', first_position, first_position + settings.width);
        PERFORM bondledger_create_partition('rm_timeline', first_position, first_position + settings.width);
        PERFORM bondledger_create_partition('rm_timeline_keys', first_position, first_position + settings.width);
        first_position := first_position + settings.width;
        made := made + 1;
    END LOOP;
    IF made > 0 THEN
        UPDATE event_partitioning SET partitions_end = first_position WHERE id = 1;
    END IF;
    RETURN first_position;
END;
$$;

-- The old tables' indexes give way to the partitioned tables' names.
ALTER TABLE events RENAME TO events_legacy;
ALTER INDEX events_pkey RENAME TO events_legacy_pkey;
ALTER INDEX events_stream_version_key RENAME TO events_legacy_stream_version;
ALTER INDEX events_business_date RENAME TO events_legacy_business_date;
ALTER INDEX events_recorded_at RENAME TO events_legacy_recorded_at;
ALTER TABLE rm_timeline RENAME TO rm_timeline_legacy;
ALTER INDEX rm_timeline_pkey RENAME TO rm_timeline_legacy_pkey;
ALTER INDEX rm_timeline_manual RENAME TO rm_timeline_legacy_manual;
ALTER INDEX rm_timeline_declaration RENAME TO rm_timeline_legacy_declaration;
ALTER INDEX rm_timeline_business_date RENAME TO rm_timeline_legacy_business_date;
ALTER TABLE rm_timeline_keys RENAME TO rm_timeline_keys_legacy;
ALTER INDEX rm_timeline_keys_pkey RENAME TO rm_timeline_keys_legacy_pkey;

-- event_id and caller_id are unique here, for the whole ledger, and lead to
-- the event's position. Only ever inserted, like the events.
CREATE TABLE event_keys (
    event_id  UUID PRIMARY KEY,
    caller_id TEXT UNIQUE CHECK (caller_id IS NULL OR char_length(caller_id) BETWEEN 1 AND 64),
    position  BIGINT NOT NULL CHECK (position >= 1)
);

SELECT bondledger_refuse_changes_of('event_keys');
CREATE TRIGGER event_keys_refuse_update_row BEFORE UPDATE ON event_keys
    FOR EACH ROW EXECUTE FUNCTION bondledger_refuse_change();
CREATE TRIGGER event_keys_refuse_delete_row BEFORE DELETE ON event_keys
    FOR EACH ROW EXECUTE FUNCTION bondledger_refuse_change();

INSERT INTO event_keys (event_id, caller_id, position)
SELECT event_id, caller_id, position FROM events_legacy;

-- Held by event_keys from now on; the columns stay in the events.
ALTER TABLE events_legacy DROP CONSTRAINT events_event_id_key;
ALTER TABLE events_legacy DROP CONSTRAINT events_caller_id_key;

-- LIKE … INCLUDING CONSTRAINTS copies the CHECK constraints by name, which
-- ATTACH requires of the old table.
CREATE TABLE events (LIKE events_legacy INCLUDING CONSTRAINTS) PARTITION BY RANGE (position);
ALTER TABLE events ADD PRIMARY KEY (position);
ALTER TABLE events ADD FOREIGN KEY (stream) REFERENCES streams (stream);
CREATE INDEX events_business_date ON events (business_date);
CREATE INDEX events_recorded_at ON events (recorded_at);

SELECT bondledger_refuse_changes_of('events');
-- Row triggers on a partitioned table are cloned to every partition, also to
-- one attached by hand; the statement triggers above refuse what matches no row.
CREATE TRIGGER events_refuse_update_row BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION bondledger_refuse_change();
CREATE TRIGGER events_refuse_delete_row BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION bondledger_refuse_change();

CREATE TABLE rm_timeline (LIKE rm_timeline_legacy INCLUDING CONSTRAINTS) PARTITION BY RANGE (position);
ALTER TABLE rm_timeline ADD PRIMARY KEY (position);
CREATE INDEX rm_timeline_manual ON rm_timeline (manual, position);
CREATE INDEX rm_timeline_declaration ON rm_timeline (declaration);
CREATE INDEX rm_timeline_business_date ON rm_timeline (business_date);

CREATE TABLE rm_timeline_keys (LIKE rm_timeline_keys_legacy INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (position);
ALTER TABLE rm_timeline_keys ADD PRIMARY KEY (kind, value, position);

-- The old tables become the first partitions. The legacy events table keeps
-- its statement triggers of 0001 (refusing UPDATE, DELETE, TRUNCATE) and
-- gets the row triggers as it is attached.
DO $$
DECLARE
    width           CONSTANT BIGINT := 1000000;
    last_position   BIGINT;
    legacy_end      BIGINT;
BEGIN
    SELECT coalesce(max(position), 0) INTO last_position FROM events_legacy;
    -- An empty ledger: the legacy partition holds nothing and never will
    -- (positions start at 1); the first partition starts at position 1.
    legacy_end := ((last_position + width - 1) / width) * width + 1;
    EXECUTE format('ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO (%s)', legacy_end);
    EXECUTE format('ALTER TABLE rm_timeline ATTACH PARTITION rm_timeline_legacy FOR VALUES FROM (MINVALUE) TO (%s)', legacy_end);
    EXECUTE format('ALTER TABLE rm_timeline_keys ATTACH PARTITION rm_timeline_keys_legacy FOR VALUES FROM (MINVALUE) TO (%s)', legacy_end);
    INSERT INTO event_partitioning (id, width, partitions_end) VALUES (1, width, legacy_end);
END;
$$;
