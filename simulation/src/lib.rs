//! Simulation, kept apart from the domain: the seeded demo marketplace (listings
//! with a hidden truth) and the crowd simulator that compares aggregation
//! policies offline. Both call the domain's own rules in `spotcheck-shared`.

pub mod arena;
pub mod crowd_bench;
pub mod crowdsim;
pub mod demo;
pub mod population;
