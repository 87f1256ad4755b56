-- Escalations staff decided, by outcome, as running counts: the staff stats read
-- a total up to a mark plus the decisions after it, instead of counting every
-- escalation ever made. An escalation is decided once (`decided_at` set with its
-- status), so each is counted once.
INSERT INTO running_counts (name) VALUES
    ('escalations_confirmed'), ('escalations_dismissed')
ON CONFLICT (name) DO NOTHING;

CREATE INDEX escalations_decided_idx ON escalations (decided_at) WHERE status <> 'open';
