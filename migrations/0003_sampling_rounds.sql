-- Surveillance rounds, sampling frames and capacity.
--
-- Every active listing is sampled once per round: `last_round` is the round the
-- sampler last looked at it (-1 = never), so ingest and the round sweep on any
-- number of replicas evaluate each (listing, round) exactly once.
ALTER TABLE listings
    ADD COLUMN active boolean NOT NULL DEFAULT true,
    ADD COLUMN last_round bigint NOT NULL DEFAULT -1;
CREATE INDEX listings_due_idx ON listings (last_round) WHERE active;

-- The sampling frame: per round and stratum, how many listings the sampler looked
-- at and the sum of their inclusion probabilities. `listings` is the population N
-- of the Horvitz-Thompson prevalence estimate.
CREATE TABLE sampling_frames (
    round           bigint NOT NULL,
    stratum         text NOT NULL,
    listings        bigint NOT NULL DEFAULT 0,
    expected_tasks  double precision NOT NULL DEFAULT 0,
    tasks           bigint NOT NULL DEFAULT 0,
    CONSTRAINT sampling_frames_pkey PRIMARY KEY (round, stratum)
);

-- The coordinators' latest capacity measurement and throttle, for staff to see.
-- One row; every replica computes the same figures and overwrites it.
CREATE TABLE capacity_state (
    id           smallint PRIMARY KEY DEFAULT 1,
    capacity     jsonb NOT NULL,
    throttle     jsonb NOT NULL,
    backlog_hours double precision,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT capacity_state_single CHECK (id = 1)
);

