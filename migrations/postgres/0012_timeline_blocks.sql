-- The timeline in blocks (docs/adr/0010-timeline-blocks.md): the rows of a
-- block of 1,000 positions kept together as a few segments, and a key
-- naming the blocks holding an event with it rather than the events. See
-- the SQLite migration of the same name for the counts behind it.
--
-- A read model, so nothing is carried over: the timeline's checkpoint goes,
-- and its next catch-up rebuilds it from the log. The tables were
-- partitioned by position with the events (0005); a segment is a
-- thousandth of the rows, so the new tables are not: their partitions go
-- with the parents, and new event partitions no longer make theirs.
DROP TABLE rm_timeline_keys;
DROP TABLE rm_timeline;

CREATE OR REPLACE FUNCTION bondledger_ensure_event_partitions(upto BIGINT) RETURNS BIGINT
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
        first_position := first_position + settings.width;
        made := made + 1;
    END LOOP;
    IF made > 0 THEN
        UPDATE event_partitioning SET partitions_end = first_position WHERE id = 1;
    END IF;
    RETURN first_position;
END;
$$;

-- entries: a JSON array, one array an event, in position order:
-- [position, manual, version, event type, business date, declaration or
-- null, [HS codes], [counterparties]]. Stored out of line uncompressed: it
-- is written once and read whole, and compressing it cost more than it saved.
CREATE TABLE rm_timeline_segments (
    first_position BIGINT PRIMARY KEY,
    block          BIGINT NOT NULL,
    last_position  BIGINT NOT NULL,
    min_date       TEXT NOT NULL,
    max_date       TEXT NOT NULL,
    entries        TEXT NOT NULL,
    CHECK (last_position >= first_position)
);
ALTER TABLE rm_timeline_segments ALTER COLUMN entries SET STORAGE EXTERNAL;
CREATE INDEX rm_timeline_segments_block ON rm_timeline_segments (block);

CREATE TABLE rm_timeline_keys (
    kind  TEXT NOT NULL,
    value TEXT NOT NULL,
    block BIGINT NOT NULL,
    positions TEXT NOT NULL,
    PRIMARY KEY (kind, value, block)
);

DELETE FROM projection_checkpoints WHERE name = 'timeline';
