-- Figures that look only at what changed since they last ran, so their cost does
-- not grow with the history.

-- Where each incremental figure has read up to.
CREATE TABLE figure_marks (
    name        text PRIMARY KEY,
    checked_to  timestamptz NOT NULL
);
INSERT INTO figure_marks (name, checked_to) VALUES ('over_collected', '-infinity');

-- The review tasks holding more votes than they asked for (I2 says none), as the
-- over-collection check last counted their vote rows.
CREATE TABLE over_collected_tasks (
    task_id  uuid PRIMARY KEY REFERENCES tasks (id),
    extra    integer NOT NULL,
    CONSTRAINT over_collected_tasks_extra_check CHECK (extra > 0)
);
