-- The timeline's tables, each one B-tree fewer an event. In SQLite only a
-- column declared exactly INTEGER PRIMARY KEY is the table's rowid: the
-- `position BIGINT PRIMARY KEY` of 0002 made a rowid tree and a second,
-- unique index on position beside it. And a key row (kind, value, position)
-- is all primary key: WITHOUT ROWID stores it once, in that key's order,
-- instead of a rowid row and an index holding the same columns again.
-- The rows are copied as they are: the projection's checkpoint stands.
CREATE TABLE rm_timeline_rowid (
    position      INTEGER PRIMARY KEY,
    manual        TEXT NOT NULL,
    version       BIGINT NOT NULL,
    event_type    TEXT NOT NULL,
    business_date TEXT NOT NULL,
    declaration   TEXT
);
INSERT INTO rm_timeline_rowid (position, manual, version, event_type, business_date, declaration)
    SELECT position, manual, version, event_type, business_date, declaration
    FROM rm_timeline ORDER BY position;
DROP TABLE rm_timeline;
ALTER TABLE rm_timeline_rowid RENAME TO rm_timeline;
CREATE INDEX rm_timeline_manual ON rm_timeline (manual, position);
CREATE INDEX rm_timeline_declaration ON rm_timeline (declaration);
CREATE INDEX rm_timeline_business_date ON rm_timeline (business_date);

CREATE TABLE rm_timeline_keys_clustered (
    kind     TEXT NOT NULL,
    value    TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (kind, value, position)
) WITHOUT ROWID;
INSERT INTO rm_timeline_keys_clustered (kind, value, position)
    SELECT kind, value, position FROM rm_timeline_keys ORDER BY kind, value, position;
DROP TABLE rm_timeline_keys;
ALTER TABLE rm_timeline_keys_clustered RENAME TO rm_timeline_keys;
