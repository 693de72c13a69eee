-- PostgreSQL checks the events' stream once per statement from here on
-- (migrations/postgres/0007_stream_check.sql, docs/adr/0006-stream-check.md).
-- SQLite keeps its foreign key: its check is one index probe a row, with no
-- query to plan and run. This migration changes nothing; it keeps the two
-- folders numbered alike.
SELECT 1;
