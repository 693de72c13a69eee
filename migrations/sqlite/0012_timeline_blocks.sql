-- The timeline in blocks (docs/adr/0010-timeline-blocks.md). Each event's
-- row was four B-tree entries (the row, its manual, declaration and date
-- indexes) and each of its HS codes and counterparties one more: about 6.5
-- entries an event, which bounded a catch-up at some 280,000 events a
-- second however little the client did.
--
-- Now the rows of a block of 1,000 positions are kept together, as a few
-- segments (the rows one commit added to the block, in position order), and
-- a key is one row a block, listing the positions in the block of the
-- events with it: a query by keys reads their rows, one a block, and one by
-- dates reads the segments too. About one key row an event is left
-- (declarations are nearly one an event); the others repeat within a block.
--
-- A read model, so nothing is carried over: the timeline's checkpoint goes,
-- and its next catch-up rebuilds it from the log.
DROP TABLE rm_timeline_keys;
DROP TABLE rm_timeline;

-- entries: a JSON array, one array an event, in position order:
-- [position, manual, version, event type, business date, declaration or
-- null, [HS codes], [counterparties]].
CREATE TABLE rm_timeline_segments (
    first_position INTEGER PRIMARY KEY,
    block          BIGINT NOT NULL,
    last_position  BIGINT NOT NULL,
    min_date       TEXT NOT NULL,
    max_date       TEXT NOT NULL,
    entries        TEXT NOT NULL,
    CHECK (last_position >= first_position)
);
CREATE INDEX rm_timeline_segments_block ON rm_timeline_segments (block);

-- kind: 'manual', 'hs' (registered HS code of an item moved or declared, or
-- a carry-over's hs), 'counterparty' (an enterprise or manual named) or
-- 'declaration'; block: (position - 1) / 1000 of an event with it;
-- positions: those events' positions, ascending, comma-separated, so that a
-- query by keys alone needs no segment.
CREATE TABLE rm_timeline_keys (
    kind  TEXT NOT NULL,
    value TEXT NOT NULL,
    block BIGINT NOT NULL,
    positions TEXT NOT NULL,
    PRIMARY KEY (kind, value, block)
) WITHOUT ROWID;

DELETE FROM projection_checkpoints WHERE name = 'timeline';
