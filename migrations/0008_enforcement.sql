-- Enforcement: sellers as records, cases with a refutation window, the penalty
-- ladder and its penalties (published as enforcement events through the outbox),
-- seller and brand-owner accounts, complaints and test purchases.

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users
    ADD CONSTRAINT users_role_check
        CHECK (role IN ('volunteer', 'staff', 'admin', 'seller', 'brand_owner')),
    ADD COLUMN seller_id text,
    ADD CONSTRAINT users_seller_check CHECK ((role = 'seller') = (seller_id IS NOT NULL));
CREATE INDEX users_seller_idx ON users (seller_id) WHERE seller_id IS NOT NULL;

-- The brands a brand owner may complain about.
CREATE TABLE brand_owner_brands (
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    brand    text NOT NULL,
    PRIMARY KEY (user_id, brand)
);

-- A seller, created the first time a case names it. The risk tier the sampler
-- uses is the staff override when there is one, else the one its live strikes
-- give (kept in `derived_tier` whenever strikes change).
CREATE TABLE sellers (
    seller_id              text PRIMARY KEY,
    storefront_status      text NOT NULL DEFAULT 'open',
    deposit_status         text NOT NULL DEFAULT 'held',
    banned                 boolean NOT NULL DEFAULT false,
    derived_tier           text NOT NULL DEFAULT 'standard',
    tier_override          text,
    tier_override_reason   text,
    tier_override_by       uuid REFERENCES users (id),
    tier_override_at       timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sellers_storefront_check CHECK (storefront_status IN ('open', 'closed')),
    CONSTRAINT sellers_deposit_check CHECK (deposit_status IN ('held', 'confiscated')),
    CONSTRAINT sellers_override_reason_check
        CHECK ((tier_override IS NULL) = (tier_override_reason IS NULL))
);

-- Who reported it: a brand owner's complaint about a listing or a seller.
CREATE TABLE complaints (
    id             uuid PRIMARY KEY,
    brand_owner    uuid NOT NULL REFERENCES users (id),
    brand          text NOT NULL,
    listing_id     text,
    seller_id      text,
    reason         text NOT NULL,
    description    text NOT NULL,
    evidence_urls  jsonb NOT NULL DEFAULT '[]',
    status         text NOT NULL DEFAULT 'open',
    task_id        uuid REFERENCES tasks (id),
    decided_by     uuid REFERENCES users (id),
    decided_at     timestamptz,
    decision_note  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT complaints_target_check CHECK (listing_id IS NOT NULL OR seller_id IS NOT NULL),
    CONSTRAINT complaints_status_check CHECK (status IN ('open', 'upheld', 'rejected'))
);
-- One open complaint per (brand owner, listing): a duplicate merges into it.
CREATE UNIQUE INDEX complaints_open_listing_key ON complaints (brand_owner, listing_id)
    WHERE status = 'open' AND listing_id IS NOT NULL;
CREATE UNIQUE INDEX complaints_open_seller_key ON complaints (brand_owner, seller_id)
    WHERE status = 'open' AND listing_id IS NULL;
CREATE INDEX complaints_owner_idx ON complaints (brand_owner, id);
CREATE INDEX complaints_status_idx ON complaints (status, id);

-- A third party's test purchase of a listing.
CREATE TABLE test_purchases (
    id             uuid PRIMARY KEY,
    listing_id     text NOT NULL,
    seller_id      text NOT NULL,
    purchased_at   timestamptz NOT NULL,
    vendor         text NOT NULL,
    result         text NOT NULL,
    notes          text,
    evidence_urls  jsonb NOT NULL DEFAULT '[]',
    recorded_by    uuid NOT NULL REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT test_purchases_result_check CHECK (result IN ('authentic', 'counterfeit'))
);
CREATE INDEX test_purchases_listing_idx ON test_purchases (listing_id);

-- A case against a seller: opened by a confirmed escalation, an accepted
-- complaint or a counterfeit test purchase. `opened_by` is the staff member
-- who confirmed or accepted it (separation of duties: not the one who decides
-- its refutation). `reviewer` holds it for exclusive review until `review_until`.
CREATE TABLE cases (
    id                uuid PRIMARY KEY,
    seller_id         text NOT NULL REFERENCES sellers (seller_id),
    listing_id        text,
    source            text NOT NULL,
    escalation_id     uuid REFERENCES escalations (id),
    complaint_id      uuid REFERENCES complaints (id),
    test_purchase_id  uuid REFERENCES test_purchases (id),
    state             text NOT NULL DEFAULT 'notified',
    opened_by         uuid REFERENCES users (id),
    note              text,
    deadline          timestamptz NOT NULL,
    reviewer          uuid REFERENCES users (id),
    review_until      timestamptz,
    strike            integer,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    closed_at         timestamptz,
    CONSTRAINT cases_source_check CHECK (source IN ('escalation', 'complaint', 'test_purchase')),
    CONSTRAINT cases_state_check
        CHECK (state IN ('notified', 'refuted', 'upheld', 'rejected', 'expired', 'enforced')),
    CONSTRAINT cases_escalation_key UNIQUE (escalation_id),
    CONSTRAINT cases_complaint_key UNIQUE (complaint_id),
    CONSTRAINT cases_test_purchase_key UNIQUE (test_purchase_id)
);
CREATE INDEX cases_due_idx ON cases (deadline) WHERE state IN ('notified', 'rejected', 'expired');
CREATE INDEX cases_seller_idx ON cases (seller_id, id);
CREATE INDEX cases_state_idx ON cases (state, id);

-- Complaints point at the case they led to.
ALTER TABLE complaints ADD COLUMN case_id uuid REFERENCES cases (id);

-- The seller's answer to a case: one per case.
CREATE TABLE refutations (
    case_id        uuid PRIMARY KEY REFERENCES cases (id),
    submitted_by   uuid NOT NULL REFERENCES users (id),
    text           text NOT NULL,
    evidence_urls  jsonb NOT NULL DEFAULT '[]',
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    decision       text,
    decided_by     uuid REFERENCES users (id),
    decision_note  text,
    decided_at     timestamptz,
    CONSTRAINT refutations_decision_check CHECK (decision IN ('uphold', 'reject'))
);

-- A strike: one per enforced case.
CREATE TABLE strikes (
    id         bigserial PRIMARY KEY,
    seller_id  text NOT NULL REFERENCES sellers (seller_id),
    case_id    uuid NOT NULL REFERENCES cases (id),
    at         timestamptz NOT NULL,
    CONSTRAINT strikes_case_key UNIQUE (case_id)
);
CREATE INDEX strikes_seller_idx ON strikes (seller_id, at);

-- The penalty ladder staff set; the newest row is in force.
CREATE TABLE penalty_ladders (
    id          bigserial PRIMARY KEY,
    ladder      jsonb NOT NULL,
    created_by  uuid REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A penalty issued by an enforced case; `event_id` names its enforcement
-- event (and `lift_event_id` the `lifted` one) so consumers deduplicate.
CREATE TABLE penalties (
    id             uuid PRIMARY KEY,
    case_id        uuid NOT NULL REFERENCES cases (id),
    seller_id      text NOT NULL REFERENCES sellers (seller_id),
    listing_id     text,
    kind           text NOT NULL,
    until          timestamptz,
    issued_at      timestamptz NOT NULL,
    event_id       uuid NOT NULL,
    lifted_at      timestamptz,
    lifted_by      uuid REFERENCES users (id),
    lift_reason    text,
    lift_event_id  uuid,
    CONSTRAINT penalties_case_kind_key UNIQUE (case_id, kind),
    CONSTRAINT penalties_kind_check CHECK (kind IN ('delist_listing', 'reimburse_buyers',
        'limit_new_listings', 'public_notice', 'close_storefront', 'confiscate_deposit',
        'permanent_ban'))
);
CREATE INDEX penalties_seller_idx ON penalties (seller_id, issued_at);

-- Exclusive review of an escalation, as for cases.
ALTER TABLE escalations
    ADD COLUMN reviewer uuid REFERENCES users (id),
    ADD COLUMN review_until timestamptz;

-- Tasks opened out of round (a brand owner's complaint): inclusion probability
-- 1, kept out of prevalence estimates.
ALTER TABLE tasks ADD COLUMN origin text NOT NULL DEFAULT 'round',
    ADD CONSTRAINT tasks_origin_check CHECK (origin IN ('round', 'complaint'));

-- Enforcement events go out through the outbox too.
ALTER TABLE outbox DROP CONSTRAINT outbox_topic_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_topic_check CHECK (topic IN ('tasks', 'votes', 'enforcement'));

-- Reading the audit log by actor, by action and newest first.
CREATE INDEX audit_log_at_idx ON audit_log (id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);

-- A seller's listings, for carrying its new risk tier to them.
CREATE INDEX listings_seller_idx ON listings (seller_id);
