//! The crowd benchmark's targets at a size the test suite can afford: 1,000
//! volunteers and 40,000 tasks, the same 40 tasks per volunteer as the full
//! 5,000 x 200,000 run (`spotcheck-simulation crowd`, see docs/crowd.md).

use spotcheck_shared::aggregate::Verdict;
use spotcheck_simulation::arena::{Arena, ArenaConfig, Run};
use spotcheck_simulation::crowd_bench::missed_targets;
use spotcheck_simulation::policy::Adaptive;
use spotcheck_simulation::population::Group;

fn arena(volunteers: usize, tasks: usize) -> Arena {
    Arena::new(ArenaConfig {
        volunteers,
        tasks,
        ..ArenaConfig::default()
    })
}

#[test]
fn the_new_policy_meets_the_targets_on_a_crowd_of_asymmetric_volunteers() {
    let arena = arena(1_000, 40_000);
    let fixed = arena.run_fixed(5);
    let best_ds = [
        &fixed.dawid_skene.report,
        &fixed.dawid_skene_decisive.report,
    ]
    .into_iter()
    .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy))
    .expect("two reports");
    let new = arena.run_adaptive(&Adaptive::learned());
    let missed = missed_targets(&new, best_ds);
    assert!(missed.is_empty(), "{:?}\n{missed:#?}", new.report);
    // And it needs fewer answers than today's policy for it.
    let today = arena.run_adaptive(&Adaptive::today());
    assert!(
        new.report.answers_per_task < today.report.answers_per_task - 0.5,
        "{:?} vs {:?}",
        new.report,
        today.report
    );
}

type Member = spotcheck_simulation::arena::Member;

/// Volunteers of `group` with at least `evidence` answers of known truth.
fn measured(run: &Run, group: Group, evidence: f64) -> Vec<&Member> {
    run.members
        .iter()
        .filter(|m| m.group == group && m.confusion.truth_evidence() >= evidence)
        .collect()
}

fn mean(members: &[&Member], f: impl Fn(&Member) -> f64) -> f64 {
    members.iter().map(|m| f(m)).sum::<f64>() / members.len().max(1) as f64
}

/// The estimate of one class's rate for the third of `members` whose true
/// rate is lowest, and for the third whose is highest.
fn thirds(
    members: &[&Member],
    truth: fn(&Member) -> f64,
    estimate: fn(&Member) -> f64,
) -> (f64, f64) {
    let mut sorted = members.to_vec();
    sorted.sort_by(|a, b| truth(a).total_cmp(&truth(b)));
    let third = sorted.len() / 3;
    (
        mean(&sorted[..third], estimate),
        mean(&sorted[sorted.len() - third..], estimate),
    )
}

#[test]
fn sensitivity_and_specificity_are_learned_apart_and_the_posterior_weighs_them_apart() {
    let run = arena(300, 20_000).run_adaptive(&Adaptive::learned());
    let mut honest = measured(&run, Group::Careful, 15.0);
    honest.extend(measured(&run, Group::Careless, 15.0));
    assert!(honest.len() > 100, "{}", honest.len());
    let sensitivity = |m: &Member| m.confusion.prob(true, Verdict::Counterfeit);
    let specificity = |m: &Member| m.confusion.prob(false, Verdict::Genuine);
    // Each class's estimate follows the volunteer's own rate for that class.
    let (low, high) = thirds(&honest, |m| m.volunteer.sensitivity, sensitivity);
    assert!(high > low + 0.05, "sensitivity {low} .. {high}");
    let (low, high) = thirds(&honest, |m| m.volunteer.specificity, specificity);
    assert!(high > low + 0.05, "specificity {low} .. {high}");
    // Careless volunteers miss many fakes yet rarely accuse a genuine
    // listing; the estimates say so, and so their "counterfeit" moves the
    // posterior further than their "genuine" does.
    let careless = measured(&run, Group::Careless, 15.0);
    assert!(
        mean(&careless, specificity) > mean(&careless, sensitivity) + 0.05,
        "{} vs {}",
        mean(&careless, specificity),
        mean(&careless, sensitivity)
    );
    let for_counterfeit = mean(&careless, |m| {
        m.confusion.log_likelihood_ratio(Verdict::Counterfeit)
    });
    let for_genuine = mean(&careless, |m| {
        -m.confusion.log_likelihood_ratio(Verdict::Genuine)
    });
    assert!(
        for_counterfeit > for_genuine + 0.3,
        "{for_counterfeit} vs {for_genuine}"
    );
}

#[test]
fn colluding_pairs_are_stopped_and_their_votes_weigh_less_than_a_newcomer_s() {
    let run = arena(400, 20_000).run_adaptive(&Adaptive::learned());
    let pairs: Vec<&Member> = run
        .members
        .iter()
        .filter(|m| m.group == Group::Colluding)
        .collect();
    assert!(pairs.len() >= 4, "{}", pairs.len());
    assert!(pairs.iter().all(|m| m.stopped_after.is_some()), "{pairs:?}");
    // The weight of a verdict is how far it moves the log-odds; a newcomer's
    // decisive verdict moves it by ln 4.
    let weight = |m: &Member| {
        [Verdict::Genuine, Verdict::Counterfeit]
            .map(|v| m.confusion.log_likelihood_ratio(v).abs())
            .into_iter()
            .fold(0.0, f64::max)
    };
    let newcomer = 4.0f64.ln();
    assert!(mean(&pairs, weight) < newcomer, "{}", mean(&pairs, weight));
    assert!(mean(&pairs, |m| m.confusion.agreement) < 1.0);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = arena(80, 1_500).run_adaptive(&Adaptive::learned());
    let b = arena(80, 1_500).run_adaptive(&Adaptive::learned());
    assert_eq!(a, b);
}
