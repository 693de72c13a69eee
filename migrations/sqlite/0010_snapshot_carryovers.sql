-- The carry-over records (kept to match each carry-over with its other side)
-- of the manuals' snapshots, each written once rather than into every
-- snapshot, as the per-sale records are (0006): a long manual's carry-overs
-- made each snapshot of it grow with every carry-over before it. A snapshot
-- of a manual at version v holds the records added at or before v and not
-- removed by then, in the order (added_at, ordinal). A snapshot written
-- before this table holds its carry-overs in its state. Part of the
-- snapshots projection: a cache.
CREATE TABLE snapshot_carryovers (
    manual      TEXT NOT NULL,
    event       TEXT NOT NULL,
    added_at    BIGINT NOT NULL,
    ordinal     BIGINT NOT NULL,
    removed_at  BIGINT,
    record      TEXT NOT NULL,
    PRIMARY KEY (manual, event)
);
CREATE INDEX snapshot_carryovers_in_order ON snapshot_carryovers (manual, added_at, ordinal);
