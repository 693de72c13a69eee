-- SQLite's timeline tables lose a B-tree each in 0011 (a rowid beside the
-- position key, a rowid beside the keys' primary key). PostgreSQL's have
-- neither to lose: a heap and one index each. Kept so both backends count
-- their migrations alike.
SELECT 1;
