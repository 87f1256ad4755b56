//! Spotcheck's domain: ids, listings, sampling, aggregation and message schemas.
//!
//! Pure logic only: nothing here touches the network, a database or the clock
//! (callers pass the time in), so every rule can be unit- and property-tested.

pub mod abuse;
pub mod aggregate;
pub mod agreement;
pub mod capacity;
pub mod complaint;
pub mod dawid_skene;
pub mod decision;
pub mod difficulty;
pub mod enforcement;
pub mod escalation;
pub mod export;
pub mod gold;
pub mod gold_rate;
pub mod ids;
pub mod lease_token;
pub mod listing;
pub mod messages;
pub mod partitions;
pub mod posterior;
pub mod prevalence;
pub mod reliability;
pub mod sampling;
pub mod streak;
pub mod task;
pub mod timeseries;

pub use aggregate::{Outcome, Verdict};
pub use ids::{EscalationId, ListingId, Role, TaskId, UserId, UserStatus};
pub use listing::{Listing, ListingError};
pub use sampling::{Inclusion, SamplingPolicy, Stratum};
pub use task::{TaskKind, TaskState};
