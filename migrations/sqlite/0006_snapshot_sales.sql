-- The per-sale records (domestic sales, for the interest check of the report)
-- of the manuals' snapshots, each written once rather than into every
-- snapshot: they are most of a long manual's state. A snapshot of a manual at
-- version v holds the records added at or before v and not removed by then,
-- in the order (added_at, ordinal). A snapshot written before this table holds
-- its sales in its state. Part of the snapshots projection: a cache.
CREATE TABLE snapshot_sales (
    manual      TEXT NOT NULL,
    event       TEXT NOT NULL,
    added_at    BIGINT NOT NULL,
    ordinal     BIGINT NOT NULL,
    removed_at  BIGINT,
    record      TEXT NOT NULL,
    PRIMARY KEY (manual, event)
);
CREATE INDEX snapshot_sales_in_order ON snapshot_sales (manual, added_at, ordinal);
