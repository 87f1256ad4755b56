//! Spotcheck's domain: ids, listings, sampling, aggregation and message schemas.
//!
//! Pure logic only: nothing here touches the network, a database or the clock
//! (callers pass the time in), so every rule can be unit- and property-tested.

pub mod aggregate;
pub mod capacity;
pub mod demo;
pub mod escalation;
pub mod ids;
pub mod listing;
pub mod messages;
pub mod prevalence;
pub mod sampling;

pub use aggregate::{Outcome, Verdict};
pub use ids::{EscalationId, ListingId, Role, TaskId, UserId, UserStatus};
pub use listing::{Listing, ListingError};
pub use sampling::{Inclusion, SamplingPolicy, Stratum};
