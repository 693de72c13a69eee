-- The events' indexes by business date and by time recorded are read by no
-- query: a manual's history as of a date or a moment is its stream read in
-- version order, each event kept or left by its date or its time, and the
-- timeline by date reads its own read model. Each was one more B-tree entry
-- an event, paid for by every append (the one by date in no order at all).
-- The columns stay, hashed and checked as before.
DROP INDEX events_business_date;
DROP INDEX events_recorded_at;
