//! Simulation, kept apart from the domain: the seeded demo marketplace (listings
//! with a hidden truth), the crowd simulator that compares aggregation policies
//! offline (`crowdsim`), and the crowd benchmark on realistic crowds
//! (`population`, `policy`, `arena`, `crowd_bench`). All call the domain's own
//! rules in `spotcheck-shared`.

pub mod arena;
pub mod crowd_bench;
pub mod crowdsim;
pub mod demo;
pub mod policy;
pub mod population;
