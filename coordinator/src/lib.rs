//! The Spotcheck coordinator: ingests listings, samples them into review tasks,
//! relays the outbox to RabbitMQ, announces votes no worker-api announced,
//! re-offers abandoned or lost lease slots, and turns votes into decisions and
//! escalations. Any number of replicas may run.

pub mod aggregator;
pub mod announce;
pub mod app;
pub mod audit;
pub mod capacity;
pub mod config;
pub mod consumer;
pub mod deadlines;
pub mod export;
pub mod feed;
pub mod import;
pub mod ingest;
pub mod ops;
pub mod periodic;
pub mod policy;
pub mod reaper;
pub mod recalibrate;
pub mod reconcile;
pub mod relay;
pub mod retention;
pub mod rounds;

pub use app::App;
pub use config::Config;
