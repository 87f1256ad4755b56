-- The lost-slot audit pages through open review tasks in id order.
CREATE INDEX tasks_open_review_id_idx ON tasks (id) WHERE state = 'open' AND kind = 'review';
