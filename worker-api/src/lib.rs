//! Spotcheck's worker API: sign-in, claims, votes and the staff endpoints, over
//! PostgreSQL (records), Redis (leases) and RabbitMQ (slot offers).

pub mod access;
pub mod acks;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod ballot_box;
pub mod claim;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod gold;
pub mod handback;
pub mod idempotency;
pub mod ops;
pub mod quota;
pub mod ratelimit;
pub mod rejection;
pub mod review_hold;
pub mod routes;
pub mod serve;
pub mod state;
pub mod users;
pub mod web;

pub use app::App;
pub use config::Config;
