//! Integration tests of Spotcheck against the real PostgreSQL, Redis and
//! RabbitMQ on loopback. Each test gets its own database, Redis key prefix and
//! queue names, so tests run in parallel and leave nothing behind.

mod aggregation;
mod auth;
mod auth_tokens;
mod authz_matrix;
mod bench_history;
mod claim_path;
mod complaints;
mod console_api;
mod contract;
mod crowd_learning;
mod delivery;
mod e2e;
mod edge;
mod enforcement;
mod exports;
mod fault;
mod harness;
mod history;
mod ingest;
mod input;
mod key_rotation;
mod leases;
mod login_protection;
mod manifests;
mod partitions;
mod production_config;
mod ratelimit;
mod runtime_layout;
mod sampling;
mod shutdown;
mod votes;
mod web_app;
