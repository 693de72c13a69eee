-- The events' indexes by business date and by time recorded are read by no
-- query (see the SQLite migration of the same name). Dropping the
-- partitioned indexes drops every partition's, the old table's among them
-- where it was attached as a partition (0005).
DROP INDEX events_business_date;
DROP INDEX events_recorded_at;
DROP INDEX IF EXISTS events_legacy_business_date;
DROP INDEX IF EXISTS events_legacy_recorded_at;
