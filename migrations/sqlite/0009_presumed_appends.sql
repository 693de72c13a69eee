-- Presumed appends are PostgreSQL's (migrations/postgres/0009_presumed_appends.sql,
-- docs/adr/0008-presumed-appends.md): an SQLite append costs no round trip to save.
-- This migration changes nothing; it keeps the two folders numbered alike.
SELECT 1;
