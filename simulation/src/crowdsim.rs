//! A seeded crowd simulator for comparing aggregation policies offline, built
//! on the same aggregation code the coordinator runs (`aggregate::majority`,
//! `posterior`, `gold`, `abuse`), plus vote sets for Dawid–Skene benchmarks.
//!
//! The crowd: 10% of volunteers answer at random, 5% always answer "genuine",
//! the rest are honest with an accuracy drawn from 0.65..0.96 (and "unsure" up
//! to 4% of the time). Tasks are counterfeit at a realistic rate (9% of sampled
//! listings by default); counterfeits come more often from high-risk sellers
//! and at lower prices. The gold pool holds as many counterfeits as genuine
//! listings, so a gold answer tests both kinds alike.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use spotcheck_shared::abuse::{AbusePolicy, AbuseReason, VolunteerStats};
use spotcheck_shared::aggregate::{Outcome, Verdict};
use spotcheck_shared::decision::{DecisionRule, Judgement, TaskFacts, WeighedVote};
use spotcheck_shared::gold::{GoldSchedule, is_gold_turn};
use spotcheck_shared::posterior::{DEFAULT_PRIOR_COUNTERFEIT, RiskThresholds};
use spotcheck_shared::reliability::{Confusion, ReliabilityPrior};

/// How often an honest volunteer says "unsure" (at most; never more than 1 - accuracy).
const HONEST_UNSURE: f64 = 0.04;

/// How a simulated volunteer answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Right with probability `accuracy`, else unsure (rarely) or wrong.
    Honest {
        /// P(right verdict).
        accuracy: f64,
    },
    /// Any of the three verdicts with equal probability.
    Random,
    /// Always "genuine".
    AlwaysGenuine,
}

impl Behaviour {
    /// A verdict on a listing whose truth is `counterfeit`.
    pub fn answer(self, counterfeit: bool, rng: &mut impl Rng) -> Verdict {
        let (right, wrong) = if counterfeit {
            (Verdict::Counterfeit, Verdict::Genuine)
        } else {
            (Verdict::Genuine, Verdict::Counterfeit)
        };
        match self {
            Behaviour::Honest { accuracy } => {
                let x: f64 = rng.random();
                if x < accuracy {
                    right
                } else if x < accuracy + HONEST_UNSURE.min(1.0 - accuracy) {
                    Verdict::Unsure
                } else {
                    wrong
                }
            }
            Behaviour::Random => {
                [Verdict::Genuine, Verdict::Counterfeit, Verdict::Unsure][rng.random_range(0..3)]
            }
            Behaviour::AlwaysGenuine => Verdict::Genuine,
        }
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Honest { .. } => "honest",
            Behaviour::Random => "random",
            Behaviour::AlwaysGenuine => "always_genuine",
        }
    }
}

/// `n` volunteers: every 20th pair (ids 0 and 1 mod 20) random, id 2 mod 20
/// always "genuine", the rest honest with accuracy drawn from 0.65..0.96.
pub fn crowd(n: usize, rng: &mut impl Rng) -> Vec<Behaviour> {
    (0..n)
        .map(|i| match i % 20 {
            0 | 1 => Behaviour::Random,
            2 => Behaviour::AlwaysGenuine,
            _ => Behaviour::Honest {
                accuracy: rng.random_range(0.65..0.96),
            },
        })
        .collect()
}

/// A listing to judge, with its hidden truth.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTask {
    /// The hidden truth.
    pub counterfeit: bool,
    /// "high", "standard" or "low".
    pub seller_risk_tier: &'static str,
    /// The listing's price.
    pub price: f64,
}

impl SimTask {
    /// What the decision needs of the task once it has asked for `slots` votes.
    fn facts(&self, slots: u32) -> TaskFacts<'static> {
        TaskFacts {
            slots,
            seller_risk_tier: self.seller_risk_tier,
            price: self.price,
        }
    }
}

/// `n` tasks, each counterfeit with probability `counterfeit_rate`.
pub fn tasks(n: usize, counterfeit_rate: f64, rng: &mut impl Rng) -> Vec<SimTask> {
    (0..n)
        .map(|_| {
            let counterfeit = rng.random_bool(counterfeit_rate);
            let x: f64 = rng.random();
            let seller_risk_tier = match (counterfeit, x) {
                (true, x) if x < 0.5 => "high",
                (true, x) if x < 0.9 => "standard",
                (false, x) if x < 0.05 => "high",
                (false, x) if x < 0.6 => "standard",
                _ => "low",
            };
            let list_price = [40.0, 80.0, 150.0, 300.0, 900.0, 1500.0][rng.random_range(0..6)];
            let factor = if counterfeit {
                rng.random_range(0.1..0.7)
            } else {
                rng.random_range(0.6..1.3)
            };
            SimTask {
                counterfeit,
                seller_risk_tier,
                price: list_price * factor,
            }
        })
        .collect()
}

/// How votes become outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A fixed number of votes, strict majority (`aggregate::majority`).
    Majority(u32),
    /// Reliability-weighted posterior with a risk-dependent stopping rule,
    /// reliability learned online from gold, abusers stopped from counting.
    Adaptive,
}

impl Policy {
    /// The name used in reports.
    pub fn name(self) -> String {
        match self {
            Policy::Majority(k) => format!("majority-{k}"),
            Policy::Adaptive => "adaptive".to_string(),
        }
    }

    fn stream(self) -> u64 {
        match self {
            Policy::Majority(k) => u64::from(k),
            Policy::Adaptive => 1 << 40,
        }
    }
}

/// Everything a simulation run depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Tasks to decide.
    pub tasks: usize,
    /// Volunteers in the crowd.
    pub volunteers: usize,
    /// The seed of the crowd, the tasks and every answer.
    pub seed: u64,
    /// Share of tasks that are counterfeit.
    pub counterfeit_rate: f64,
    /// The adaptive policy's prior P(counterfeit).
    pub prior: f64,
    /// The adaptive policy's reliability prior.
    pub reliability: ReliabilityPrior,
    /// The adaptive policy's stopping rules.
    pub thresholds: RiskThresholds,
    /// The adaptive policy's gold schedule.
    pub gold: GoldSchedule,
    /// The adaptive policy's abuse rules.
    pub abuse: AbusePolicy,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tasks: 20_000,
            volunteers: 200,
            seed: 1,
            counterfeit_rate: 0.09,
            prior: DEFAULT_PRIOR_COUNTERFEIT,
            reliability: ReliabilityPrior::default(),
            thresholds: RiskThresholds::default(),
            gold: GoldSchedule::default(),
            abuse: AbusePolicy::default(),
        }
    }
}

/// How one policy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    /// The policy's name.
    pub policy: String,
    /// Share of tasks whose outcome is the truth (uncertain counts as wrong).
    pub accuracy: f64,
    /// Share of tasks ending uncertain.
    pub uncertain_share: f64,
    /// Real votes per task.
    pub votes_per_task: f64,
    /// Gold answers per task (the measuring overhead).
    pub gold_per_task: f64,
    /// Of escalated tasks (counterfeit or uncertain), the share truly counterfeit.
    pub escalation_precision: f64,
    /// Of counterfeit tasks, the share escalated.
    pub escalation_recall: f64,
}

/// When a volunteer stopped counting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stopped {
    /// Which rule stopped them.
    pub reason: AbuseReason,
    /// Their gold answers at that point.
    pub after_gold_answers: u32,
}

/// One volunteer at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolunteerReport {
    /// Index in the crowd.
    pub id: u32,
    /// How they answer.
    pub behaviour: Behaviour,
    /// Gold answers given.
    pub gold_answers: u32,
    /// Real votes given.
    pub votes: u32,
    /// Whether and when they were stopped from counting.
    pub stopped: Option<Stopped>,
}

/// One policy's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Its figures.
    pub report: PolicyReport,
    /// Every volunteer (only the adaptive policy measures and stops them).
    pub volunteers: Vec<VolunteerReport>,
}

/// A crowd and its tasks, ready to run policies on.
#[derive(Debug, Clone)]
pub struct Simulation {
    config: SimConfig,
    crowd: Vec<Behaviour>,
    tasks: Vec<SimTask>,
}

/// A volunteer's state in the adaptive policy.
struct Member {
    confusion: Confusion,
    stats: VolunteerStats,
    claims: u64,
    votes: u32,
    stopped: Option<Stopped>,
}

impl Simulation {
    /// Draws the crowd and the tasks from `config.seed`.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let crowd = crowd(config.volunteers, &mut rng);
        let tasks = tasks(config.tasks, config.counterfeit_rate, &mut rng);
        Simulation {
            config,
            crowd,
            tasks,
        }
    }

    /// The crowd.
    pub fn crowd(&self) -> &[Behaviour] {
        &self.crowd
    }

    /// Runs one policy over every task; the same seed gives the same run.
    pub fn run(&self, policy: Policy) -> Run {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(policy.stream() + 1);
        let mut members: Vec<Member> = (0..self.crowd.len())
            .map(|_| Member {
                confusion: Confusion::prior(&self.config.reliability),
                stats: VolunteerStats::default(),
                claims: 0,
                votes: 0,
                stopped: None,
            })
            .collect();
        let mut outcomes = Vec::with_capacity(self.tasks.len());
        let (mut votes, mut gold) = (0u64, 0u64);
        let mut active: Vec<u32> = (0..self.crowd.len() as u32).collect();
        for task in &self.tasks {
            let (outcome, task_votes, task_gold) = match policy {
                Policy::Majority(k) => (self.fixed(task, k, &mut members, &mut rng), k, 0),
                Policy::Adaptive => self.adaptive(task, &mut members, &mut active, &mut rng),
            };
            outcomes.push(outcome);
            votes += u64::from(task_votes);
            gold += u64::from(task_gold);
        }
        Run {
            report: self.report(policy, &outcomes, votes, gold),
            volunteers: members
                .iter()
                .zip(&self.crowd)
                .enumerate()
                .map(|(id, (m, b))| VolunteerReport {
                    id: id as u32,
                    behaviour: *b,
                    gold_answers: m.stats.gold_answered(),
                    votes: m.votes,
                    stopped: m.stopped,
                })
                .collect(),
        }
    }

    fn fixed(
        &self,
        task: &SimTask,
        k: u32,
        members: &mut [Member],
        rng: &mut ChaCha8Rng,
    ) -> Judgement {
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < (k as usize).min(self.crowd.len()) {
            let v = rng.random_range(0..self.crowd.len());
            if !chosen.contains(&v) {
                chosen.push(v);
            }
        }
        let votes: Vec<WeighedVote> = chosen
            .iter()
            .map(|v| {
                members[*v].votes += 1;
                WeighedVote {
                    verdict: self.crowd[*v].answer(task.counterfeit, rng),
                    confusion: None,
                }
            })
            .collect();
        DecisionRule::Majority.judge(&votes, task.facts(k))
    }

    /// One task under the adaptive policy: returns its outcome, real votes and
    /// the gold answers given while it was open.
    fn adaptive(
        &self,
        task: &SimTask,
        members: &mut [Member],
        active: &mut Vec<u32>,
        rng: &mut ChaCha8Rng,
    ) -> (Judgement, u32, u32) {
        let config = &self.config;
        // The coordinator's rule, with no cap on slots: the simulation stops
        // when the stopping rule's own vote budget is spent.
        let rule = DecisionRule::Adaptive {
            prior: config.prior,
            thresholds: config.thresholds.clone(),
            max_slots: u32::MAX,
        };
        let key = config.seed.to_be_bytes();
        let mut voters: Vec<(u32, Verdict)> = Vec::new();
        let mut gold = 0;
        loop {
            // Every active volunteer already voted here: the task cannot go on.
            if active.iter().all(|v| voters.iter().any(|(w, _)| w == v)) {
                let exhausted = DecisionRule::Adaptive {
                    prior: config.prior,
                    thresholds: config.thresholds.clone(),
                    max_slots: 0,
                };
                let votes = self.weighed(&voters, members);
                let judged = exhausted.judge(&votes, task.facts(voters.len() as u32));
                return (judged, voters.len() as u32, gold);
            }
            let slot = rng.random_range(0..active.len());
            let id = active[slot];
            if voters.iter().any(|(w, _)| *w == id) {
                continue;
            }
            let behaviour = self.crowd[id as usize];
            let member = &mut members[id as usize];
            let answers = u64::from(member.stats.gold_answered()) + u64::from(member.votes);
            let gold_turn = is_gold_turn(
                &key,
                &id.to_be_bytes(),
                member.claims,
                config.gold.rate(answers),
            );
            member.claims += 1;
            if gold_turn {
                gold += 1;
                let truth = rng.random_bool(0.5);
                let verdict = behaviour.answer(truth, rng);
                let right = if truth {
                    Verdict::Counterfeit
                } else {
                    Verdict::Genuine
                };
                member.confusion.observe(truth, verdict, 1.0);
                member.stats.record_gold(truth, verdict == right);
                if let Some(reason) = config.abuse.assess(&member.stats) {
                    member.stopped = Some(Stopped {
                        reason,
                        after_gold_answers: member.stats.gold_answered(),
                    });
                    active.swap_remove(slot);
                }
                continue;
            }
            member.votes += 1;
            voters.push((id, behaviour.answer(task.counterfeit, rng)));
            let votes = self.weighed(&voters, members);
            let judged = rule.judge(&votes, task.facts(voters.len() as u32));
            if !matches!(judged, Judgement::MoreVotes { .. }) {
                return (judged, voters.len() as u32, gold);
            }
        }
    }

    /// The votes so far as the decision weighs them (stopped voters weigh nothing).
    fn weighed(&self, voters: &[(u32, Verdict)], members: &[Member]) -> Vec<WeighedVote> {
        voters
            .iter()
            .map(|(id, verdict)| {
                let m = &members[*id as usize];
                WeighedVote {
                    verdict: *verdict,
                    confusion: m.stopped.is_none().then_some(m.confusion),
                }
            })
            .collect()
    }

    fn report(
        &self,
        policy: Policy,
        outcomes: &[Judgement],
        votes: u64,
        gold: u64,
    ) -> PolicyReport {
        let n = self.tasks.len().max(1) as f64;
        let (mut right, mut uncertain, mut escalated, mut caught, mut counterfeits) =
            (0, 0, 0, 0, 0);
        for (task, judged) in self.tasks.iter().zip(outcomes) {
            let escalates = judged.escalates();
            let outcome = &match judged {
                Judgement::Decided { outcome, .. } => *outcome,
                Judgement::MoreVotes { .. } => Outcome::Uncertain,
            };
            right += usize::from(matches!(
                (outcome, task.counterfeit),
                (Outcome::Counterfeit, true) | (Outcome::Genuine, false)
            ));
            uncertain += usize::from(*outcome == Outcome::Uncertain);
            escalated += usize::from(escalates);
            caught += usize::from(escalates && task.counterfeit);
            counterfeits += usize::from(task.counterfeit);
        }
        let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        PolicyReport {
            policy: policy.name(),
            accuracy: right as f64 / n,
            uncertain_share: uncertain as f64 / n,
            votes_per_task: votes as f64 / n,
            gold_per_task: gold as f64 / n,
            escalation_precision: share(caught, escalated),
            escalation_recall: share(caught, counterfeits),
        }
    }
}

/// A labelled batch of votes for Dawid–Skene: labels are 0 genuine,
/// 1 counterfeit, 2 unsure.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteSet {
    /// `(task, worker, label)`, tasks in order, each with distinct workers.
    pub votes: Vec<(u32, u32, u8)>,
    /// Each task's true label (0 or 1).
    pub truth: Vec<u8>,
    /// Each worker's behaviour.
    pub workers: Vec<Behaviour>,
}

/// The label of a verdict in a [`VoteSet`].
pub fn label(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Genuine => 0,
        Verdict::Counterfeit => 1,
        Verdict::Unsure => 2,
    }
}

/// `tasks` tasks with `votes_per_task` votes each from `workers` workers of
/// the simulated crowd (spammers included). How much each worker does is
/// skewed the way crowds are: a few do much, most do little.
pub fn vote_set(seed: u64, tasks: usize, votes_per_task: usize, workers: usize) -> VoteSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let crowd = crowd(workers, &mut rng);
    let mut cumulative = Vec::with_capacity(workers);
    let mut total = 0.0;
    for _ in 0..workers {
        // Activity ~ 1/u: heavy-tailed, capped so no one does everything.
        total += 1.0 / rng.random_range(0.02..1.0f64);
        cumulative.push(total);
    }
    let per_task = votes_per_task.min(workers);
    let mut votes = Vec::with_capacity(tasks * per_task);
    let mut truth = Vec::with_capacity(tasks);
    let mut chosen: Vec<u32> = Vec::with_capacity(per_task);
    for t in 0..tasks {
        let counterfeit = rng.random_bool(0.09);
        truth.push(u8::from(counterfeit));
        chosen.clear();
        while chosen.len() < per_task {
            let x = rng.random::<f64>() * total;
            let w = cumulative.partition_point(|c| *c <= x).min(workers - 1) as u32;
            if !chosen.contains(&w) {
                chosen.push(w);
            }
        }
        for &w in &chosen {
            let verdict = crowd[w as usize].answer(counterfeit, &mut rng);
            votes.push((t as u32, w, label(verdict)));
        }
    }
    VoteSet {
        votes,
        truth,
        workers: crowd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most gold answers a spammer may give before being stopped.
    const STOP_BOUND: u32 = 30;

    #[test]
    fn spammers_are_stopped_within_the_bound_and_careful_volunteers_never_are() {
        for seed in 1..=3 {
            let sim = Simulation::new(SimConfig {
                tasks: 8_000,
                seed,
                ..Default::default()
            });
            let run = sim.run(Policy::Adaptive);
            for v in &run.volunteers {
                match v.behaviour {
                    Behaviour::Random | Behaviour::AlwaysGenuine => {
                        let stopped = v.stopped.unwrap_or_else(|| panic!("seed {seed}: {v:?}"));
                        assert_eq!(stopped.reason, AbuseReason::LowGoldAccuracy);
                        assert!(
                            stopped.after_gold_answers <= STOP_BOUND,
                            "seed {seed}: {v:?}"
                        );
                    }
                    Behaviour::Honest { accuracy } if accuracy >= 0.8 => {
                        assert_eq!(v.stopped, None, "seed {seed}: {v:?}");
                    }
                    Behaviour::Honest { .. } => {}
                }
            }
        }
    }

    #[test]
    fn the_adaptive_policy_beats_three_votes_and_needs_fewer_than_five() {
        let sim = Simulation::new(SimConfig {
            tasks: 8_000,
            ..Default::default()
        });
        let three = sim.run(Policy::Majority(3)).report;
        let five = sim.run(Policy::Majority(5)).report;
        let adaptive = sim.run(Policy::Adaptive).report;
        assert!(
            adaptive.accuracy > three.accuracy,
            "{adaptive:?} vs {three:?}"
        );
        assert!(adaptive.escalation_recall > three.escalation_recall);
        assert!(adaptive.votes_per_task + adaptive.gold_per_task < five.votes_per_task);
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let config = SimConfig {
            tasks: 500,
            volunteers: 60,
            ..Default::default()
        };
        let a = Simulation::new(config.clone()).run(Policy::Adaptive);
        assert_eq!(a, Simulation::new(config).run(Policy::Adaptive));
    }

    #[test]
    fn vote_sets_have_distinct_workers_per_task_and_a_realistic_counterfeit_rate() {
        let set = vote_set(4, 5_000, 5, 300);
        assert_eq!(set.votes.len(), 25_000);
        for task in set.votes.chunks(5) {
            let mut workers: Vec<u32> = task.iter().map(|v| v.1).collect();
            workers.sort_unstable();
            workers.dedup();
            assert_eq!(workers.len(), 5);
        }
        let rate = set.truth.iter().map(|t| f64::from(*t)).sum::<f64>() / 5_000.0;
        assert!((0.07..0.11).contains(&rate), "{rate}");
    }
}
