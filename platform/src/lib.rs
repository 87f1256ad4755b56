//! The I/O both Spotcheck binaries share: configuration of the services,
//! PostgreSQL pool and migrations, RabbitMQ topology and publishing, the Redis
//! lease protocol, telemetry and shutdown. Domain rules stay in `spotcheck-shared`.

pub mod amqp;
pub mod clock;
pub mod complaints;
pub mod config;
pub mod db;
pub mod enforcement;
pub mod export;
pub mod figures;
pub mod lease;
pub mod ops;
pub mod outbox;
pub mod partitions;
pub mod reliability;
pub mod secrets;
pub mod shutdown;
pub mod standing;
pub mod subscription;
pub mod telemetry;
pub mod watchdog;
