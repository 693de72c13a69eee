-- PostgreSQL reads what an append needs in one round trip from here on
-- (migrations/postgres/0008_append_reads.sql). SQLite runs in the process:
-- its statements cost no round trip. This migration changes nothing; it
-- keeps the two folders numbered alike.
SELECT 1;
