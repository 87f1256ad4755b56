//! The `aggregation` benchmark: three vote policies on one simulated crowd,
//! and how fast the adaptive policy stops spammers from counting.

use spotcheck_simulation::crowdsim::{Behaviour, Policy, SimConfig, Simulation, VolunteerReport};

/// Runs the three policies and prints their table and the abuse summary.
pub fn run(tasks: usize, volunteers: usize, seed: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        tasks > 0 && volunteers >= 5,
        "need tasks > 0 and at least 5 volunteers"
    );
    let config = SimConfig {
        tasks,
        volunteers,
        seed,
        ..Default::default()
    };
    let sim = Simulation::new(config);
    println!("{tasks} tasks, {volunteers} volunteers, seed {seed}");
    println!(
        "{:<12} {:>9} {:>11} {:>10} {:>10} {:>15} {:>13}",
        "policy",
        "accuracy",
        "votes/task",
        "gold/task",
        "uncertain",
        "esc. precision",
        "esc. recall"
    );
    let mut adaptive = Vec::new();
    for policy in [Policy::Majority(3), Policy::Majority(5), Policy::Adaptive] {
        let run = sim.run(policy);
        let r = &run.report;
        println!(
            "{:<12} {:>9.4} {:>11.2} {:>10.2} {:>10.4} {:>15.4} {:>13.4}",
            r.policy,
            r.accuracy,
            r.votes_per_task,
            r.gold_per_task,
            r.uncertain_share,
            r.escalation_precision,
            r.escalation_recall
        );
        if policy == Policy::Adaptive {
            adaptive = run.volunteers;
        }
    }
    println!();
    println!("adaptive policy, volunteers stopped from counting:");
    summarise("random", &adaptive, |b| b == Behaviour::Random);
    summarise("always genuine", &adaptive, |b| {
        b == Behaviour::AlwaysGenuine
    });
    summarise(
        "honest < 0.8",
        &adaptive,
        |b| matches!(b, Behaviour::Honest { accuracy } if accuracy < 0.8),
    );
    summarise(
        "honest >= 0.8",
        &adaptive,
        |b| matches!(b, Behaviour::Honest { accuracy } if accuracy >= 0.8),
    );
    Ok(())
}

fn summarise(name: &str, volunteers: &[VolunteerReport], pick: impl Fn(Behaviour) -> bool) {
    let group: Vec<&VolunteerReport> = volunteers.iter().filter(|v| pick(v.behaviour)).collect();
    let mut at: Vec<u32> = group
        .iter()
        .filter_map(|v| v.stopped.map(|s| s.after_gold_answers))
        .collect();
    at.sort_unstable();
    let spread = match (at.first(), at.get(at.len() / 2), at.last()) {
        (Some(min), Some(median), Some(max)) => {
            format!("after {min}/{median}/{max} gold answers (min/median/max)")
        }
        _ => String::new(),
    };
    println!(
        "  {name:<15} {:>4} of {:<4} {spread}",
        at.len(),
        group.len()
    );
}
