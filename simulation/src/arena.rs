//! The crowd benchmark's engine: one realistic crowd ([`population`]) and one
//! stream of tasks, decided by fixed redundancy (majority, or the project's
//! Dawid–Skene over the same fixed votes) or by an adaptive policy that
//! measures volunteers with gold, learns from staff outcomes and, in its new
//! form, from agreement, spends gold where it pays and weighs task difficulty.
//!
//! Every rule is the domain's own (`decision`, `gold`, `abuse`, `agreement`,
//! `difficulty`, `dawid_skene`); the engine only plays the crowd.

use crate::crowdsim::{SimTask, tasks};
use crate::policy::{Adaptive, GoldRule, Policy};
use crate::population::{CrowdShape, Group, Roster, Volunteer, population};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use spotcheck_shared::abuse::VolunteerStats;
use spotcheck_shared::aggregate::{Outcome, Verdict};
use spotcheck_shared::agreement::{AgreementVote, agreement_updates};
use spotcheck_shared::dawid_skene::{DawidSkeneOptions, dawid_skene};
use spotcheck_shared::decision::{
    DecisionRule, EscalationReason, Judgement, TaskFacts, WeighedVote,
};
use spotcheck_shared::gold::is_gold_turn;
use spotcheck_shared::reliability::{Confusion, ReliabilityPrior};
use std::collections::VecDeque;

/// The crowd and the work.
#[derive(Debug, Clone, PartialEq)]
pub struct ArenaConfig {
    /// Volunteers in the crowd.
    pub volunteers: usize,
    /// Tasks to decide.
    pub tasks: usize,
    /// The seed of the crowd, the tasks and every answer.
    pub seed: u64,
    /// Share of tasks that are counterfeit.
    pub counterfeit_rate: f64,
    /// The crowd's make-up.
    pub shape: CrowdShape,
    /// Tasks decided between an escalation and staff's verdict on it.
    pub staff_delay: usize,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        ArenaConfig {
            volunteers: 200,
            tasks: 20_000,
            seed: 1,
            counterfeit_rate: 0.09,
            shape: CrowdShape::default(),
            staff_delay: 2_000,
        }
    }
}

/// How a policy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The policy's name.
    pub policy: String,
    /// Share of tasks whose outcome is the truth (uncertain counts as wrong).
    pub accuracy: f64,
    /// Share of tasks ending uncertain.
    pub uncertain_share: f64,
    /// Review votes per task.
    pub votes_per_task: f64,
    /// Gold answers per task.
    pub gold_per_task: f64,
    /// Review votes and gold answers per task.
    pub answers_per_task: f64,
    /// Of escalated tasks, the share truly counterfeit.
    pub escalation_precision: f64,
    /// Of counterfeit tasks, the share escalated.
    pub escalation_recall: f64,
}

/// One volunteer at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// Their group.
    pub group: Group,
    /// Their true rates.
    pub volunteer: Volunteer,
    /// Gold answers given.
    pub gold_answers: u32,
    /// Review votes given.
    pub votes: u32,
    /// Gold answers when stopped from counting, if they were.
    pub stopped_after: Option<u32>,
    /// Their final confusion estimate.
    pub confusion: Confusion,
    #[serde(skip)]
    stats: VolunteerStats,
    #[serde(skip)]
    claims: u64,
}

/// One policy's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Its figures.
    pub report: Report,
    /// Every volunteer.
    pub members: Vec<Member>,
}

/// The three judgements of one set of fixed votes.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    /// Strict majority.
    pub majority: Run,
    /// Dawid–Skene with "unsure" as a third label.
    pub dawid_skene: Run,
    /// Dawid–Skene over the decisive votes.
    pub dawid_skene_decisive: Run,
}

/// A crowd and its tasks, ready to run policies on.
#[derive(Debug, Clone)]
pub struct Arena {
    config: ArenaConfig,
    crowd: Vec<Volunteer>,
    tasks: Vec<SimTask>,
}

/// An escalation waiting for staff's verdict.
struct Pending {
    due: usize,
    counterfeit: bool,
    voters: Vec<(u32, Verdict)>,
}

impl Arena {
    /// Draws the crowd and the tasks from `config.seed`.
    pub fn new(config: ArenaConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let crowd = population(config.volunteers, &config.shape, &mut rng);
        let tasks = tasks(config.tasks, config.counterfeit_rate, &mut rng);
        Arena {
            config,
            crowd,
            tasks,
        }
    }

    /// The crowd.
    pub fn crowd(&self) -> &[Volunteer] {
        &self.crowd
    }

    fn members(&self, prior: &ReliabilityPrior) -> Vec<Member> {
        self.crowd
            .iter()
            .map(|v| Member {
                group: v.group,
                volunteer: *v,
                gold_answers: 0,
                votes: 0,
                stopped_after: None,
                confusion: Confusion::prior(prior),
                stats: VolunteerStats::default(),
                claims: 0,
            })
            .collect()
    }

    fn rng(&self, stream: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(stream);
        rng
    }

    fn time(&self, task: usize) -> f64 {
        task as f64 / self.tasks.len().max(1) as f64
    }

    /// Runs `k` fixed votes per task once and judges them three ways: by
    /// strict majority, by Dawid–Skene over all the votes ("unsure" a label
    /// of its own, as crowd-kit takes them) and by Dawid–Skene over the
    /// decisive votes only.
    pub fn run_fixed(&self, k: u32) -> Fixed {
        let mut rng = self.rng(u64::from(k));
        let mut members = self.members(&ReliabilityPrior::default());
        let mut roster = Roster::new(&self.crowd);
        let mut majority = Vec::with_capacity(self.tasks.len());
        let mut labelled: Vec<(u32, u32, u8)> = Vec::with_capacity(self.tasks.len() * k as usize);
        for (t, task) in self.tasks.iter().enumerate() {
            roster.advance(self.time(t));
            let mut chosen: Vec<u32> = Vec::with_capacity(k as usize);
            let mut tries = 0;
            while chosen.len() < k as usize && tries < 1_000 {
                tries += 1;
                let Some(id) = roster.draw(&mut rng) else {
                    break;
                };
                if chosen.contains(&id) {
                    continue;
                }
                chosen.push(id);
                if let Some(p) = self.crowd[id as usize].partner
                    && chosen.len() < k as usize
                    && roster.present(p)
                    && !chosen.contains(&p)
                    && rng.random_bool(self.config.shape.pair_meets)
                {
                    chosen.push(p);
                }
            }
            let votes: Vec<WeighedVote> = chosen
                .iter()
                .map(|id| {
                    members[*id as usize].votes += 1;
                    let verdict =
                        self.crowd[*id as usize].answer(t as u64, task.counterfeit, &mut rng);
                    labelled.push((t as u32, *id, label(verdict)));
                    WeighedVote {
                        verdict,
                        confusion: None,
                    }
                })
                .collect();
            majority.push(DecisionRule::Majority.judge(&votes, facts(task, k)));
        }
        let votes = labelled.len() as u64;
        let decisive: Vec<(u32, u32, u8)> = labelled.iter().copied().filter(|v| v.2 != 2).collect();
        let ds3 = self.dawid_skene_outcomes(&labelled);
        let ds2 = self.dawid_skene_outcomes(&decisive);
        let run = |name: String, outcomes: &[Judgement]| Run {
            report: self.report(&name, outcomes, votes, 0),
            members: members.clone(),
        };
        Fixed {
            majority: run(Policy::Majority(k).name(), &majority),
            dawid_skene: run(Policy::DawidSkene(k).name(), &ds3),
            dawid_skene_decisive: run(format!("ds-{k}-decisive"), &ds2),
        }
    }

    /// Dawid–Skene labels of `(task, worker, label)` votes as outcomes: label
    /// 1 escalates as counterfeit, 0 is genuine, "unsure" or none uncertain.
    fn dawid_skene_outcomes(&self, votes: &[(u32, u32, u8)]) -> Vec<Judgement> {
        let fit = dawid_skene(votes, 3, &DawidSkeneOptions::default())
            .expect("three labels, all in range");
        (0..self.tasks.len())
            .map(|t| {
                let outcome = match fit.labels.get(t).copied().flatten() {
                    Some(1) => Outcome::Counterfeit,
                    Some(0) => Outcome::Genuine,
                    _ => Outcome::Uncertain,
                };
                Judgement::Decided {
                    outcome,
                    posterior: None,
                    escalation: (outcome == Outcome::Counterfeit)
                        .then_some(EscalationReason::CounterfeitMajority),
                }
            })
            .collect()
    }

    /// Runs an adaptive policy over every task; the same seed gives the same run.
    pub fn run_adaptive(&self, policy: &Adaptive) -> Run {
        let mut rng = self.rng(1 << 40);
        let mut members = self.members(&policy.reliability);
        let mut roster = Roster::new(&self.crowd);
        let rule = DecisionRule::Adaptive {
            prior: policy.prior,
            thresholds: policy.thresholds.clone(),
            max_slots: u32::MAX,
        };
        let key = self.config.seed.to_be_bytes();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut outcomes = Vec::with_capacity(self.tasks.len());
        let (mut votes_total, mut gold_total) = (0u64, 0u64);
        for (t, task) in self.tasks.iter().enumerate() {
            roster.advance(self.time(t));
            while pending.front().is_some_and(|p| p.due <= t) {
                let p = pending.pop_front().expect("checked");
                for (id, verdict) in p.voters {
                    let m = &mut members[id as usize];
                    if m.stopped_after.is_none() {
                        m.confusion.observe(p.counterfeit, verdict, 1.0);
                    }
                }
            }
            let audit = policy
                .agreement
                .is_some_and(|a| a.is_audit_task(&key, &(t as u64).to_be_bytes()));
            let rule = match &policy.agreement {
                Some(a) if audit => DecisionRule::Adaptive {
                    prior: policy.prior,
                    thresholds: a.audit_thresholds(&policy.thresholds),
                    max_slots: u32::MAX,
                },
                _ => rule.clone(),
            };
            let mut voters: Vec<(u32, Verdict)> = Vec::new();
            let mut queued: Option<u32> = None;
            let mut tries = 0;
            let judged = loop {
                let next = queued.take().or_else(|| roster.draw(&mut rng));
                let exhausted = tries > 1_000 || next.is_none();
                tries += 1;
                if exhausted {
                    let rule = DecisionRule::Adaptive {
                        prior: policy.prior,
                        thresholds: policy.thresholds.clone(),
                        max_slots: 0,
                    };
                    let weighed = weighed(&voters, &members);
                    break rule.judge_with(
                        &weighed,
                        facts(task, voters.len() as u32),
                        &policy.difficulty,
                    );
                }
                let id = next.expect("not exhausted");
                if voters.iter().any(|(w, _)| *w == id) {
                    continue;
                }
                let v = self.crowd[id as usize];
                let m = &mut members[id as usize];
                let rate = match &policy.gold {
                    GoldRule::Schedule(s) => s.rate(u64::from(m.gold_answers) + u64::from(m.votes)),
                    GoldRule::Uncertainty(g) => {
                        g.rate(&m.confusion, &m.stats, &policy.abuse, &policy.reliability)
                    }
                };
                let gold_turn = is_gold_turn(&key, &id.to_be_bytes(), m.claims, rate);
                m.claims += 1;
                if gold_turn {
                    gold_total += 1;
                    let truth = match &policy.gold {
                        GoldRule::Schedule(_) => rng.random_bool(0.5),
                        GoldRule::Uncertainty(g) => {
                            rng.random_bool(g.counterfeit_share(&m.confusion))
                        }
                    };
                    let verdict = v.answer(rng.random(), truth, &mut rng);
                    m.gold_answers += 1;
                    m.confusion.observe(truth, verdict, 1.0);
                    m.stats.record_gold_answer(truth, verdict);
                    let stop = match policy.soft_stop_margin {
                        Some(margin) => policy.abuse.assess_with(
                            &m.stats,
                            &m.confusion,
                            &policy.reliability,
                            margin,
                        ),
                        None => policy.abuse.assess(&m.stats),
                    };
                    if m.stopped_after.is_none() && stop.is_some() {
                        m.stopped_after = Some(m.gold_answers);
                        roster.remove(id);
                    }
                    continue;
                }
                m.votes += 1;
                votes_total += 1;
                let verdict = v.answer(t as u64, task.counterfeit, &mut rng);
                m.stats.record_vote(verdict);
                voters.push((id, verdict));
                if let Some(p) = v.partner
                    && roster.present(p)
                    && !voters.iter().any(|(w, _)| *w == p)
                    && rng.random_bool(self.config.shape.pair_meets)
                {
                    queued = Some(p);
                }
                let weighed = weighed(&voters, &members);
                let judged = rule.judge_with(
                    &weighed,
                    facts(task, voters.len() as u32),
                    &policy.difficulty,
                );
                if !matches!(judged, Judgement::MoreVotes { .. }) {
                    break judged;
                }
            };
            let counting: Vec<(u32, Verdict)> = voters
                .iter()
                .copied()
                .filter(|(id, _)| members[*id as usize].stopped_after.is_none())
                .collect();
            if let Some(params) = policy.agreement.as_ref().filter(|_| audit) {
                let votes: Vec<AgreementVote<u32>> = counting
                    .iter()
                    .take(params.audit_votes as usize)
                    .map(|(id, verdict)| AgreementVote {
                        voter: *id,
                        verdict: *verdict,
                        confusion: members[*id as usize].confusion,
                    })
                    .collect();
                for u in agreement_updates(policy.prior, &votes, params) {
                    u.apply(&mut members[u.voter as usize].confusion, params);
                }
            }
            if judged.escalates() && policy.staff_feedback {
                pending.push_back(Pending {
                    due: t + self.config.staff_delay,
                    counterfeit: task.counterfeit,
                    voters: counting,
                });
            }
            outcomes.push(judged);
        }
        Run {
            report: self.report(policy.name, &outcomes, votes_total, gold_total),
            members,
        }
    }

    /// Runs any policy (a fixed one runs its votes and keeps the one judgement).
    pub fn run(&self, policy: &Policy) -> Run {
        match policy {
            Policy::Majority(k) => self.run_fixed(*k).majority,
            Policy::DawidSkene(k) => self.run_fixed(*k).dawid_skene,
            Policy::Adaptive(a) => self.run_adaptive(a),
        }
    }

    fn report(&self, policy: &str, outcomes: &[Judgement], votes: u64, gold: u64) -> Report {
        let n = self.tasks.len().max(1) as f64;
        let (mut right, mut uncertain, mut escalated, mut caught, mut counterfeits) =
            (0usize, 0usize, 0usize, 0usize, 0usize);
        for (task, judged) in self.tasks.iter().zip(outcomes) {
            let outcome = match judged {
                Judgement::Decided { outcome, .. } => *outcome,
                Judgement::MoreVotes { .. } => Outcome::Uncertain,
            };
            right += usize::from(matches!(
                (outcome, task.counterfeit),
                (Outcome::Counterfeit, true) | (Outcome::Genuine, false)
            ));
            uncertain += usize::from(outcome == Outcome::Uncertain);
            escalated += usize::from(judged.escalates());
            caught += usize::from(judged.escalates() && task.counterfeit);
            counterfeits += usize::from(task.counterfeit);
        }
        let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Report {
            policy: policy.to_string(),
            accuracy: right as f64 / n,
            uncertain_share: uncertain as f64 / n,
            votes_per_task: votes as f64 / n,
            gold_per_task: gold as f64 / n,
            answers_per_task: (votes + gold) as f64 / n,
            escalation_precision: share(caught, escalated),
            escalation_recall: share(caught, counterfeits),
        }
    }
}

fn facts(task: &SimTask, slots: u32) -> TaskFacts<'static> {
    TaskFacts {
        slots,
        seller_risk_tier: task.seller_risk_tier,
        price: task.price,
    }
}

fn label(verdict: Verdict) -> u8 {
    crate::crowdsim::label(verdict)
}

/// The votes so far as the decision weighs them (stopped voters weigh nothing).
fn weighed(voters: &[(u32, Verdict)], members: &[Member]) -> Vec<WeighedVote> {
    voters
        .iter()
        .map(|(id, verdict)| {
            let m = &members[*id as usize];
            WeighedVote {
                verdict: *verdict,
                confusion: m.stopped_after.is_none().then_some(m.confusion),
            }
        })
        .collect()
}
