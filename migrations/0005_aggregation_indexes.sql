-- Indexes for the round sweep, gold claims and prevalence estimates.

-- The sweep takes due listings in (last_round, listing_id) order.
DROP INDEX IF EXISTS listings_due_idx;
CREATE INDEX listings_due_idx ON listings (last_round, listing_id) WHERE active;

-- Gold turns look up the gold tasks; prevalence reads a round's review tasks.
CREATE INDEX tasks_gold_idx ON tasks (id) WHERE kind = 'gold';
CREATE INDEX tasks_round_idx ON tasks (round) WHERE kind = 'review';
