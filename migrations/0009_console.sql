-- What the staff console and the volunteer page show beyond the record itself:
-- a minute-by-minute history of the backlog (the dashboards' time series), each
-- category's typical price (shown beside a listing's price in a claim), and the
-- indexes the per-bucket counts of the dashboards range over.

-- One row per minute, written by every coordinator's capacity job (an upsert, so
-- replicas agree); kept for 90 days.
CREATE TABLE capacity_samples (
    at              timestamptz PRIMARY KEY,
    backlog_votes   bigint NOT NULL,
    backlog_hours   double precision,
    votes_per_hour  double precision NOT NULL
);

-- The typical price of a category in one currency: the geometric mean of the
-- prices of every listing version ingested (`exp(sum_ln / n)`), kept up to date
-- by ingest batch by batch.
CREATE TABLE category_prices (
    category  text NOT NULL,
    currency  text NOT NULL,
    n         bigint NOT NULL,
    sum_ln    double precision NOT NULL,
    PRIMARY KEY (category, currency),
    CONSTRAINT category_prices_n_check CHECK (n > 0)
);
INSERT INTO category_prices (category, currency, n, sum_ln)
SELECT category, currency, count(*), sum(ln(price))
FROM listings WHERE price > 0
GROUP BY category, currency;

CREATE INDEX decisions_decided_idx ON decisions (decided_at);
CREATE INDEX escalations_created_idx ON escalations (created_at);
