-- Partitioning is PostgreSQL's (migrations/postgres/0005_partitioning.sql,
-- docs/adr/0003-partitioning.md): an SQLite ledger is one file on one
-- machine and keeps its tables whole. This migration changes nothing; it
-- keeps the two folders numbered alike.
SELECT 1;
