-- Lease rules: task kinds (each kind may have its own lease TTL) and recorded
-- links between volunteers and sellers, which bar a volunteer from reviewing that
-- seller's listings (conflict of interest).

ALTER TABLE tasks
    ADD COLUMN kind text NOT NULL DEFAULT 'review',
    ADD CONSTRAINT tasks_kind_check CHECK (kind IN ('review', 'gold'));

CREATE TABLE volunteer_seller_links (
    volunteer_id  uuid NOT NULL REFERENCES users (id),
    seller_id     text NOT NULL,
    reason        text NOT NULL DEFAULT 'declared',
    created_by    uuid REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT volunteer_seller_links_pkey PRIMARY KEY (volunteer_id, seller_id)
);
