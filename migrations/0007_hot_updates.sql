-- Room on every page for the updates each row gets, so they stay heap-only
-- (HOT: no new index entries). A task row is updated by every vote batch that
-- counts on it; a vote row once more when the aggregator accounts it.
-- Applies to pages written from now on.
ALTER TABLE tasks SET (fillfactor = 70);
ALTER TABLE votes SET (fillfactor = 85);
