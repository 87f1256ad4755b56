-- An outbox row may stand for several identical messages: a new task's slot
-- offers are one row with `copies` = votes required, not one row per slot, so
-- ingest writes (and the relay reads and deletes) a third of the rows.
ALTER TABLE outbox ADD COLUMN copies integer NOT NULL DEFAULT 1
    CONSTRAINT outbox_copies_check CHECK (copies >= 1);
