-- Spotcheck schema, first cut: the path of a listing from ingest to a staff decision.
-- PostgreSQL is the system of record; Redis and RabbitMQ hold nothing that is not
-- also here or rebuildable from here. Constraint names are stable: code and tests
-- refer to them.

-- Accounts of volunteers, staff and admins.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    password_hash text NOT NULL,                       -- Argon2id PHC string
    role          text NOT NULL,
    status        text NOT NULL DEFAULT 'active',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_username_check CHECK (length(username) BETWEEN 3 AND 64),
    CONSTRAINT users_role_check CHECK (role IN ('volunteer', 'staff', 'admin')),
    CONSTRAINT users_status_check CHECK (status IN ('active', 'suspended'))
);

-- Opaque refresh tokens, stored as SHA-256 hashes. Each login starts a family;
-- every refresh spends one token and issues the next of the same family. Spending
-- a token twice revokes the family (reuse detection).
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    spent_at    timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

-- Listings as last published by the marketplace; `version` only moves forward.
CREATE TABLE listings (
    listing_id        text PRIMARY KEY,
    version           bigint NOT NULL,
    seller_id         text NOT NULL,
    brand             text NOT NULL,
    category          text NOT NULL,
    region            text NOT NULL,
    seller_risk_tier  text NOT NULL,
    price             double precision NOT NULL,
    currency          text NOT NULL,
    title             text NOT NULL,
    description       text NOT NULL,
    image_urls        jsonb NOT NULL,
    signals           jsonb NOT NULL,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT listings_version_check CHECK (version >= 0)
);

-- The staff's sampling policy, one row per version; the newest row is in force.
-- `policy` is the JSON document of the public contract:
-- {default_rate, floor_rate, rules: [{category?, region?, seller_risk_tier?, rate}], boosts}.
CREATE TABLE sampling_policies (
    id          bigserial PRIMARY KEY,
    policy      jsonb NOT NULL,
    created_by  uuid REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO sampling_policies (policy)
VALUES ('{"default_rate": 0.05, "floor_rate": 0.0, "rules": [], "boosts": {}}');

-- A review task: one listing in one surveillance round. The inclusion probability
-- and the stratum that selected it are kept for unbiased estimates and to explain
-- to anyone why the listing was inspected.
CREATE TABLE tasks (
    id                     uuid PRIMARY KEY,
    listing_id             text NOT NULL REFERENCES listings (listing_id),
    listing_version        bigint NOT NULL,
    round                  bigint NOT NULL,
    state                  text NOT NULL DEFAULT 'open',
    votes_required         integer NOT NULL,
    votes_counted          integer NOT NULL DEFAULT 0,
    inclusion_probability  double precision NOT NULL,
    stratum                text NOT NULL,               -- category/region/tier
    sampling               jsonb NOT NULL,              -- rule index, base rate, boosts
    policy_id              bigint REFERENCES sampling_policies (id),
    created_at             timestamptz NOT NULL DEFAULT now(),
    decided_at             timestamptz,
    CONSTRAINT tasks_listing_round_key UNIQUE (listing_id, round),
    CONSTRAINT tasks_state_check CHECK (state IN ('open', 'decided', 'escalated')),
    CONSTRAINT tasks_votes_required_check CHECK (votes_required BETWEEN 1 AND 50),
    -- I2 at the bottom: a task never counts more votes than it asked for.
    CONSTRAINT tasks_votes_counted_check CHECK (votes_counted BETWEEN 0 AND votes_required),
    CONSTRAINT tasks_probability_check CHECK (inclusion_probability > 0 AND inclusion_probability <= 1)
);
CREATE INDEX tasks_open_idx ON tasks (created_at) WHERE state = 'open';

-- Votes: at most one per task and volunteer (I2, I3).
CREATE TABLE votes (
    id            uuid PRIMARY KEY,
    task_id       uuid NOT NULL REFERENCES tasks (id),
    volunteer_id  uuid NOT NULL REFERENCES users (id),
    verdict       text NOT NULL,
    reasons       jsonb NOT NULL,
    note          text,
    lease_fence   bigint NOT NULL,                     -- fencing token of the lease used
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT votes_task_volunteer_key UNIQUE (task_id, volunteer_id),
    CONSTRAINT votes_verdict_check CHECK (verdict IN ('genuine', 'counterfeit', 'unsure'))
);
CREATE INDEX votes_volunteer_idx ON votes (volunteer_id);

-- The one decision per task (I5).
CREATE TABLE decisions (
    task_id     uuid PRIMARY KEY REFERENCES tasks (id),
    outcome     text NOT NULL,
    tally       jsonb NOT NULL,                        -- votes per verdict
    decided_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT decisions_outcome_check CHECK (outcome IN ('genuine', 'counterfeit', 'uncertain'))
);

-- Suspected counterfeits for staff; at most one per task (I5).
CREATE TABLE escalations (
    id                   uuid PRIMARY KEY,
    task_id              uuid NOT NULL REFERENCES tasks (id),
    listing_id           text NOT NULL REFERENCES listings (listing_id),
    status               text NOT NULL DEFAULT 'open',
    reason               text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    decided_by           uuid REFERENCES users (id),
    decided_at           timestamptz,
    decision_note        text,
    refutation_deadline  timestamptz,                  -- set when confirmed
    CONSTRAINT escalations_task_key UNIQUE (task_id),
    CONSTRAINT escalations_status_check CHECK (status IN ('open', 'confirmed', 'dismissed'))
);
CREATE INDEX escalations_status_idx ON escalations (status, id);

-- Transactional outbox: rows written in the same transaction as the state they
-- announce; the relay publishes them with confirms and then marks them sent.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    CONSTRAINT outbox_topic_check CHECK (topic IN ('tasks', 'votes'))
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;

-- Who did what: staff decisions, policy changes, account changes.
CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    actor_id  uuid REFERENCES users (id),
    action    text NOT NULL,
    subject   text NOT NULL,
    old       jsonb,
    new       jsonb,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, id);
