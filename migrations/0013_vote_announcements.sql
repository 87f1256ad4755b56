-- Votes are announced to the aggregator by a confirmed publish after their commit,
-- not through the outbox. The sweep of unaccounted votes reads the votes stamped
-- after this mark (and before its grace), so its cost does not grow with the
-- history; votes before this migration were announced through the outbox.
INSERT INTO figure_marks (name, checked_to) VALUES ('votes_announced', now())
ON CONFLICT (name) DO NOTHING;
