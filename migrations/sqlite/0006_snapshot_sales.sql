-- A snapshot's per-sale records (domestic sales, for the interest check of the
-- report) kept apart from the rest of the state: they are most of a long
-- manual's state, and a balance as of some event needs none of them, so it
-- reads the state alone. NULL in a snapshot written before: its state holds them.
ALTER TABLE snapshots ADD COLUMN sales TEXT;
