-- Aggregation: gold tasks, volunteer reliability, adaptive redundancy, abuse and
-- collusion flags, and the periodic Dawid-Skene recalibration.

-- The known answer of each gold task (tasks.kind = 'gold'). Gold tasks are never
-- decided or escalated; every volunteer may answer each one once.
CREATE TABLE gold_answers (
    task_id     uuid PRIMARY KEY REFERENCES tasks (id),
    answer      text NOT NULL,
    created_by  uuid REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gold_answers_answer_check CHECK (answer IN ('genuine', 'counterfeit'))
);

-- Each volunteer's confusion estimate (Dirichlet counts per true class and
-- verdict, serialized `Confusion`), the figures the abuse rules look at
-- (serialized `VolunteerStats`), and whether their votes carry weight.
CREATE TABLE volunteer_reliability (
    volunteer_id   uuid PRIMARY KEY REFERENCES users (id),
    confusion      jsonb NOT NULL,
    stats          jsonb NOT NULL,
    counting       boolean NOT NULL DEFAULT true,
    flag           text,                          -- why they stopped counting
    flagged_at     timestamptz,
    reinstated_by  uuid REFERENCES users (id),
    reinstated_at  timestamptz,
    recalibrated   jsonb,                         -- latest Dawid-Skene confusion
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX volunteer_reliability_flag_idx ON volunteer_reliability (flagged_at) WHERE NOT counting;

-- `accounted_at`: the aggregator has applied this vote to its volunteer's pace
-- (and, on a gold task, to their reliability), exactly once.
-- `scored_at`: a staff outcome has been applied to its volunteer's reliability.
-- `seconds_taken`: from the lease grant to the vote.
ALTER TABLE votes
    ADD COLUMN accounted_at   timestamptz,
    ADD COLUMN scored_at      timestamptz,
    ADD COLUMN seconds_taken  double precision;
CREATE INDEX votes_created_idx ON votes (created_at);

-- The posterior a decision was taken at (NULL for majority decisions).
ALTER TABLE decisions ADD COLUMN posterior double precision;

-- Accounts that vote identically far more often than chance.
CREATE TABLE collusion_flags (
    id            bigserial PRIMARY KEY,
    members       uuid[] NOT NULL,                -- sorted
    detected_at   timestamptz NOT NULL DEFAULT now(),
    status        text NOT NULL DEFAULT 'open',
    CONSTRAINT collusion_flags_members_key UNIQUE (members),
    CONSTRAINT collusion_flags_status_check CHECK (status IN ('open', 'cleared'))
);

-- One row per Dawid-Skene recalibration run.
CREATE TABLE recalibrations (
    id            bigserial PRIMARY KEY,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    votes         bigint NOT NULL,
    tasks         bigint NOT NULL,
    volunteers    bigint NOT NULL,
    iterations    integer NOT NULL,
    seconds       double precision NOT NULL,
    agreement     double precision               -- share of decided tasks whose EM label matches
);
