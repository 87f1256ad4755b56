-- A year of history without slowing down: votes, decisions and the audit log
-- become month-partitioned (PostgreSQL native partitioning), retention exports
-- then drops old months, and the figures that must survive retention are rolled
-- up first.
--
-- Votes and decisions are partitioned by range of task_id: task ids are UUIDv7,
-- so a month of tasks is one uuid range, a task's votes and decision share a
-- partition, and the unique key (task_id, volunteer_id) guarding I2 and I3 still
-- covers the whole table (a partitioned table's unique keys must hold the
-- partition key). The audit log is partitioned by its `at`. The coordinator
-- creates month partitions ahead of time (`spotcheck_shared::partitions`). The
-- existing rows become each table's DEFAULT partition, which also takes any row
-- whose month has no partition yet; the coordinator moves such rows out when it
-- creates their month.

-- Each round task's finding, as the prevalence estimate counts it: true when
-- staff confirmed it, false when staff dismissed it, else as the volunteers
-- decided (true counterfeit, false genuine); NULL while undecided or uncertain.
-- Kept on the task by triggers on decisions and escalations, whoever writes
-- them, so the estimate reads a round's tasks alone, and retention, which drops
-- old decisions but never tasks, cannot change it.
ALTER TABLE tasks ADD COLUMN finding boolean;
UPDATE tasks t SET finding = CASE WHEN e.status = 'confirmed' THEN true
                                  WHEN e.status = 'dismissed' THEN false
                                  WHEN d.outcome = 'counterfeit' THEN true
                                  WHEN d.outcome = 'genuine' THEN false END
FROM decisions d LEFT JOIN escalations e ON e.task_id = d.task_id
WHERE d.task_id = t.id;

CREATE FUNCTION tasks_finding_from_decisions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A staff outcome already recorded stands over the volunteers' decision.
    UPDATE tasks t SET finding = CASE n.outcome WHEN 'counterfeit' THEN true
                                                WHEN 'genuine' THEN false END
    FROM decided n
    WHERE t.id = n.task_id
      AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.task_id = n.task_id
                      AND e.status IN ('confirmed', 'dismissed'));
    RETURN NULL;
END
$$;

CREATE FUNCTION tasks_finding_from_escalations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks t SET finding = (n.status = 'confirmed')
    FROM changed n
    WHERE t.id = n.task_id AND n.status IN ('confirmed', 'dismissed');
    RETURN NULL;
END
$$;

CREATE TRIGGER escalations_finding_insert AFTER INSERT ON escalations
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
    EXECUTE FUNCTION tasks_finding_from_escalations();
CREATE TRIGGER escalations_finding_update AFTER UPDATE ON escalations
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
    EXECUTE FUNCTION tasks_finding_from_escalations();

-- The partitioned tables carry no foreign keys. Attaching or detaching a
-- partition of a table with foreign keys locks the referenced tables (tasks,
-- users) against writes, and deadlocks with the vote path that writes both.
-- Tasks and users are never deleted, and every writer of a vote or decision
-- has just locked or created its task in the same statement or transaction.

-- Votes.
ALTER TABLE votes DROP CONSTRAINT votes_task_id_fkey, DROP CONSTRAINT votes_volunteer_id_fkey;
ALTER TABLE votes RENAME TO votes_default;
ALTER TABLE votes_default DROP CONSTRAINT votes_pkey;
ALTER INDEX votes_task_volunteer_key RENAME TO votes_default_task_volunteer_key;
ALTER INDEX votes_volunteer_idx RENAME TO votes_default_volunteer_idx;
ALTER INDEX votes_created_idx RENAME TO votes_default_created_idx;
CREATE TABLE votes (
    id            uuid NOT NULL,
    task_id       uuid NOT NULL,
    volunteer_id  uuid NOT NULL,
    verdict       text NOT NULL,
    reasons       jsonb NOT NULL,
    note          text,
    lease_fence   bigint NOT NULL,                     -- fencing token of the lease used
    created_at    timestamptz NOT NULL DEFAULT now(),
    accounted_at  timestamptz,
    scored_at     timestamptz,
    seconds_taken double precision,
    CONSTRAINT votes_pkey PRIMARY KEY (id, task_id),
    CONSTRAINT votes_task_volunteer_key UNIQUE (task_id, volunteer_id),
    CONSTRAINT votes_verdict_check CHECK (verdict IN ('genuine', 'counterfeit', 'unsure'))
) PARTITION BY RANGE (task_id);
CREATE INDEX votes_volunteer_idx ON votes (volunteer_id);
CREATE INDEX votes_created_idx ON votes (created_at);
ALTER TABLE votes ATTACH PARTITION votes_default DEFAULT;

-- Decisions.
ALTER TABLE decisions DROP CONSTRAINT decisions_task_id_fkey;
ALTER TABLE decisions RENAME TO decisions_default;
ALTER INDEX decisions_pkey RENAME TO decisions_default_pkey;
ALTER INDEX decisions_decided_idx RENAME TO decisions_default_decided_idx;
CREATE TABLE decisions (
    task_id     uuid NOT NULL,
    outcome     text NOT NULL,
    tally       jsonb NOT NULL,                        -- votes per verdict
    decided_at  timestamptz NOT NULL DEFAULT now(),
    posterior   double precision,                      -- NULL for majority decisions
    CONSTRAINT decisions_pkey PRIMARY KEY (task_id),
    CONSTRAINT decisions_outcome_check CHECK (outcome IN ('genuine', 'counterfeit', 'uncertain'))
) PARTITION BY RANGE (task_id);
CREATE INDEX decisions_decided_idx ON decisions (decided_at);
ALTER TABLE decisions ATTACH PARTITION decisions_default DEFAULT;
CREATE TRIGGER decisions_finding AFTER INSERT ON decisions
    REFERENCING NEW TABLE AS decided FOR EACH STATEMENT
    EXECUTE FUNCTION tasks_finding_from_decisions();

-- The audit log (its primary key gains `at`, the partition key).
ALTER TABLE audit_log DROP CONSTRAINT audit_log_actor_id_fkey;
ALTER TABLE audit_log RENAME TO audit_log_default;
ALTER TABLE audit_log_default DROP CONSTRAINT audit_log_pkey;
ALTER SEQUENCE audit_log_id_seq OWNED BY NONE;
ALTER INDEX audit_log_subject_idx RENAME TO audit_log_default_subject_idx;
ALTER INDEX audit_log_at_idx RENAME TO audit_log_default_at_idx;
ALTER INDEX audit_log_actor_idx RENAME TO audit_log_default_actor_idx;
ALTER INDEX audit_log_action_idx RENAME TO audit_log_default_action_idx;
CREATE TABLE audit_log (
    id        bigint NOT NULL DEFAULT nextval('audit_log_id_seq'),
    actor_id  uuid,
    action    text NOT NULL,
    subject   text NOT NULL,
    old       jsonb,
    new       jsonb,
    at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_pkey PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;
CREATE INDEX audit_log_subject_idx ON audit_log (subject, id);
CREATE INDEX audit_log_at_idx ON audit_log (id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);
CREATE INDEX audit_log_time_idx ON audit_log (at);
ALTER TABLE audit_log ATTACH PARTITION audit_log_default DEFAULT;

-- Last month's, this month's and the next two months' partitions, made here so
-- that no row of a fresh or upgraded database lands in a default partition
-- while the coordinator's upkeep (`spotcheck_platform::partitions`, the same
-- names and bounds) creates a partition for it: a row routed to the default
-- partition that meets a newly attached partition of its month fails. The
-- upkeep creates the later months ahead of time.
DO $$
DECLARE
    m date;
    t text;
    key text;
    lo text;
    hi text;
    part text;
    storage text;
    cols text;
BEGIN
    FOR m IN SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month',
                                    date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months',
                                    interval '1 month')::date LOOP
        FOREACH t IN ARRAY ARRAY['votes', 'decisions', 'audit_log'] LOOP
            part := format('%s_y%sm%s', t, to_char(m, 'YYYY'), to_char(m, 'MM'));
            IF t = 'audit_log' THEN
                key := 'at';
                lo := quote_literal(to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00');
                hi := quote_literal(to_char(m + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
            ELSE
                -- The smallest UUIDv7 of the month's first millisecond.
                key := 'task_id';
                lo := quote_literal(regexp_replace(
                    lpad(to_hex((extract(epoch FROM m::timestamp AT TIME ZONE 'UTC') * 1000)::bigint), 12, '0')
                    || '00000000000000000000', '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\1-\2-\3-\4-\5'));
                hi := quote_literal(regexp_replace(
                    lpad(to_hex((extract(epoch FROM (m + interval '1 month')::timestamp AT TIME ZONE 'UTC') * 1000)::bigint), 12, '0')
                    || '00000000000000000000', '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\1-\2-\3-\4-\5'));
            END IF;
            storage := CASE WHEN t = 'votes' THEN ' WITH (fillfactor = 85)' ELSE '' END;
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
            FROM pg_attribute WHERE attrelid = t::regclass AND attnum > 0 AND NOT attisdropped;
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)%s',
                           part, t, storage);
            EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %s AND %I < %s RETURNING %s)
                            INSERT INTO %I (%s) SELECT %s FROM moved',
                           t || '_default', key, lo, key, hi, cols, part, cols, cols);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                           t, part, lo, hi);
        END LOOP;
    END LOOP;
END
$$;

-- Retention: each month partition exported before it is dropped. A partition is
-- dropped only while it still holds exactly the rows its archive holds.
CREATE TABLE retention_archives (
    partition    text PRIMARY KEY,
    table_name   text NOT NULL,
    month        date NOT NULL,
    rows         bigint NOT NULL,
    bytes        bigint NOT NULL,
    sha256       text NOT NULL,
    path         text NOT NULL,
    exported_at  timestamptz NOT NULL DEFAULT now(),
    dropped_at   timestamptz,
    CONSTRAINT retention_archives_table_check CHECK (table_name IN ('votes', 'decisions', 'audit_log'))
);

-- Reliability survives retention: before a month of votes is dropped, the known
-- truths those votes were scored against (gold answers, staff outcomes, test
-- purchases) are added here per volunteer, verdict and truth; recalibration
-- reads these beside the live votes.
CREATE TABLE known_truth_rollups (
    volunteer_id  uuid NOT NULL REFERENCES users (id),
    verdict       text NOT NULL,
    truth         boolean NOT NULL,
    n             bigint NOT NULL,
    PRIMARY KEY (volunteer_id, verdict, truth)
);

-- Every vote a volunteer ever cast, counted once when the aggregator accounts it.
ALTER TABLE volunteer_reliability ADD COLUMN votes_total bigint NOT NULL DEFAULT 0;
UPDATE volunteer_reliability r SET votes_total = c.n
FROM (SELECT volunteer_id, count(*) AS n FROM votes
      WHERE accounted_at IS NOT NULL GROUP BY volunteer_id) c
WHERE c.volunteer_id = r.volunteer_id;

-- Counts the staff figures show, kept as a total up to a mark plus the rows
-- stamped after it (read live): the coordinator moves the mark, so a figure
-- never counts the whole history again. `-infinity`: nothing counted yet.
CREATE TABLE running_counts (
    name        text PRIMARY KEY,
    total       bigint NOT NULL DEFAULT 0,
    counted_to  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO running_counts (name) VALUES
    ('listings'), ('review_tasks'), ('votes'), ('review_votes'),
    ('decisions_genuine'), ('decisions_counterfeit'), ('decisions_uncertain');

-- Review votes per minute, filled as the `review_votes` count moves its mark, so
-- the capacity monitor reads an hour's pace from sixty rows (plus the votes after
-- the mark) instead of counting the hour's votes every few seconds. Kept 90 days.
CREATE TABLE vote_minutes (
    minute        timestamptz PRIMARY KEY,
    review_votes  bigint NOT NULL
);

CREATE INDEX listings_first_seen_idx ON listings (first_seen_at);
CREATE INDEX tasks_created_idx ON tasks (created_at) WHERE kind = 'review';
CREATE INDEX tasks_escalated_idx ON tasks (id) WHERE state = 'escalated' AND kind = 'review';
