//! Integration tests of Spotcheck against the real PostgreSQL, Redis and
//! RabbitMQ on loopback. Each test gets its own database, Redis key prefix and
//! queue names, so tests run in parallel and leave nothing behind.

mod auth;
mod e2e;
mod harness;
mod ingest;
mod sampling;
mod votes;
