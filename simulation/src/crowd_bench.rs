//! The crowd benchmark: majority-3, majority-5, Dawid–Skene over 5 fixed
//! votes, today's adaptive policy and the new one on one realistic crowd, as a
//! table, with who was stopped from counting and whether the targets hold.

use crate::arena::{Arena, ArenaConfig, Member, Report, Run};
use crate::policy::Adaptive;
use crate::population::Group;
use std::fmt::Write;

/// The most gold answers a random or always-"genuine" volunteer may give
/// before being stopped.
pub const STOP_WITHIN_GOLD: u32 = 30;

/// The most answers per task (review votes and gold) the new policy may use.
pub const MAX_ANSWERS_PER_TASK: f64 = 3.0;

/// Who was stopped in one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Stops {
    /// The group.
    pub group: Group,
    /// Members of the group.
    pub members: usize,
    /// Of which stopped from counting.
    pub stopped: usize,
    /// Gold answers at the stop: min, median, max (of those stopped).
    pub after_gold: Option<(u32, u32, u32)>,
}

/// Every group's stops in a run.
pub fn stops(members: &[Member]) -> Vec<Stops> {
    Group::ALL
        .iter()
        .map(|g| {
            let group: Vec<&Member> = members.iter().filter(|m| m.group == *g).collect();
            let mut at: Vec<u32> = group.iter().filter_map(|m| m.stopped_after).collect();
            at.sort_unstable();
            let after_gold = match (at.first(), at.get(at.len() / 2), at.last()) {
                (Some(a), Some(b), Some(c)) => Some((*a, *b, *c)),
                _ => None,
            };
            Stops {
                group: *g,
                members: group.len(),
                stopped: at.len(),
                after_gold,
            }
        })
        .collect()
}

/// What `new` misses of the targets against Dawid–Skene over 5 fixed votes
/// (`dawid_skene`): accuracy at least as high, at most 3 answers per task,
/// no careful volunteer stopped, every random and always-"genuine" volunteer
/// stopped by their 30th gold answer (one the run ended before that many gold
/// answers is not a miss). Empty when all hold.
pub fn missed_targets(new: &Run, dawid_skene: &Report) -> Vec<String> {
    let mut missed = Vec::new();
    if new.report.accuracy < dawid_skene.accuracy {
        missed.push(format!(
            "accuracy {:.4} < {} {:.4}",
            new.report.accuracy, dawid_skene.policy, dawid_skene.accuracy
        ));
    }
    if new.report.answers_per_task > MAX_ANSWERS_PER_TASK {
        missed.push(format!(
            "{:.3} answers per task > {MAX_ANSWERS_PER_TASK}",
            new.report.answers_per_task
        ));
    }
    for m in &new.members {
        match m.group {
            Group::Careful if m.stopped_after.is_some() => {
                missed.push(format!("careful volunteer stopped: {:?}", m.volunteer));
            }
            Group::Random | Group::AlwaysGenuine
                if m.stopped_after.unwrap_or(m.gold_answers) > STOP_WITHIN_GOLD =>
            {
                missed.push(format!(
                    "{} volunteer stopped after {:?} gold answers ({} votes)",
                    m.group.name(),
                    m.stopped_after,
                    m.votes
                ));
            }
            _ => {}
        }
    }
    missed
}

/// The runs of one benchmark.
#[derive(Debug, Clone)]
pub struct Bench {
    /// majority-3, majority-5, dawid-skene-5 (two ways), adaptive today,
    /// adaptive new.
    pub runs: Vec<Run>,
}

impl Bench {
    /// Runs the five policies on the crowd and tasks of `config`.
    pub fn run(config: ArenaConfig) -> Self {
        let arena = Arena::new(config);
        let three = arena.run_fixed(3);
        let five = arena.run_fixed(5);
        let today = arena.run_adaptive(&Adaptive::today());
        let new = arena.run_adaptive(&Adaptive::learned());
        Bench {
            runs: vec![
                three.majority,
                five.majority,
                five.dawid_skene,
                five.dawid_skene_decisive,
                today,
                new,
            ],
        }
    }

    /// The new policy's run.
    pub fn new_policy(&self) -> &Run {
        &self.runs[5]
    }

    /// Dawid–Skene over 5 fixed votes, the better of its two forms.
    pub fn dawid_skene(&self) -> &Report {
        let (a, b) = (&self.runs[2].report, &self.runs[3].report);
        if a.accuracy >= b.accuracy { a } else { b }
    }

    /// What the new policy misses of the targets (empty when all hold).
    pub fn missed_targets(&self) -> Vec<String> {
        missed_targets(self.new_policy(), self.dawid_skene())
    }

    /// The table, the stops of the two adaptive policies and the targets.
    pub fn render(&self, config: &ArenaConfig) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} volunteers, {} tasks, seed {}",
            config.volunteers, config.tasks, config.seed
        );
        let _ = writeln!(
            out,
            "{:<15} {:>8} {:>10} {:>9} {:>11} {:>9} {:>10} {:>8}",
            "policy",
            "accuracy",
            "votes/task",
            "gold/task",
            "answers/task",
            "uncertain",
            "precision",
            "recall"
        );
        for run in &self.runs {
            let r = &run.report;
            let _ = writeln!(
                out,
                "{:<15} {:>8.4} {:>10.3} {:>9.3} {:>11.3} {:>9.4} {:>10.4} {:>8.4}",
                r.policy,
                r.accuracy,
                r.votes_per_task,
                r.gold_per_task,
                r.answers_per_task,
                r.uncertain_share,
                r.escalation_precision,
                r.escalation_recall
            );
        }
        for run in &self.runs[4..] {
            let _ = writeln!(out, "\n{}: stopped from counting", run.report.policy);
            for s in stops(&run.members) {
                let mut spread = s
                    .after_gold
                    .map(|(a, b, c)| format!("after {a}/{b}/{c} gold answers (min/median/max)"))
                    .unwrap_or_default();
                let trial: Vec<u32> = run
                    .members
                    .iter()
                    .filter(|m| m.group == s.group && m.stopped_after.is_none())
                    .map(|m| m.gold_answers)
                    .collect();
                if matches!(s.group, Group::Random | Group::AlwaysGenuine) && !trial.is_empty() {
                    let most = trial.iter().max().copied().unwrap_or(0);
                    let _ = write!(
                        spread,
                        "; {} not yet stopped at the end, at most {most} gold answers",
                        trial.len()
                    );
                }
                let _ = writeln!(
                    out,
                    "  {:<15} {:>5} of {:<5} {spread}",
                    s.group.name(),
                    s.stopped,
                    s.members
                );
            }
        }
        let missed = self.missed_targets();
        if missed.is_empty() {
            let _ = writeln!(out, "\ntargets: all met by the new policy");
        } else {
            let _ = writeln!(out, "\ntargets missed ({}):", missed.len());
            for m in missed.iter().take(10) {
                let _ = writeln!(out, "  {m}");
            }
        }
        out
    }
}
