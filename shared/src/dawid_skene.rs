//! Dawid–Skene expectation–maximisation over a whole batch of votes: each
//! worker's confusion matrix, the class priors and every task's posterior.
//!
//! It reproduces crowd-kit's `DawidSkene` (`n_iter = 100`, `tol = 1e-5`) step
//! by step, so offline audits can be checked against that reference:
//! - start from majority-vote posteriors (vote shares per task);
//! - M-step: a worker's error row for an observed label sums the posteriors of
//!   the tasks they gave it; every such entry is floored at 1e-10, then each
//!   true-class column is normalised over the labels the worker ever gave
//!   (labels they never gave have probability 0 and are never looked up);
//! - E-step in base-2 logs: prior (floored at 1e-10) times the product of the
//!   error entries, shifted by the row maximum before exponentiating;
//! - priors are the mean posterior over tasks with votes;
//! - stop when the evidence lower bound per vote (crowd-kit's form: the prior
//!   term counted once per vote) improves by less than `tol`, or after `n_iter`;
//! - a task's label is the most probable class, the smallest label on a tie;
//! - labels that no vote uses are not classes at all (crowd-kit only knows the
//!   labels it sees): their posterior, prior and confusion entries are 0.
//!
//! Votes are grouped by task once; an iteration is then three linear passes
//! (E-step, M-step sums, bound), about 25 ms per million votes in release.

use thiserror::Error;

/// Floor crowd-kit applies to error entries, priors and posteriors.
const EPS: f64 = 1e-10;

/// When to stop iterating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DawidSkeneOptions {
    /// At most this many EM iterations (crowd-kit's `n_iter`).
    pub max_iter: u32,
    /// Stop when the evidence lower bound per vote improves by less than this.
    pub tol: f64,
}

impl Default for DawidSkeneOptions {
    fn default() -> Self {
        DawidSkeneOptions {
            max_iter: 100,
            tol: 1e-5,
        }
    }
}

/// Input that cannot be aggregated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DawidSkeneError {
    /// Fewer than two labels, or more than a `u8` holds.
    #[error("Dawid-Skene needs 2..=256 labels, got {0}")]
    LabelCount(usize),
    /// A vote's label is not below `n_labels`.
    #[error("vote label {label} is out of range for {n_labels} labels")]
    LabelOutOfRange {
        /// The offending label.
        label: u8,
        /// The number of labels given.
        n_labels: usize,
    },
}

/// The fitted model.
#[derive(Debug, Clone, PartialEq)]
pub struct DawidSkeneFit {
    /// K, the number of labels.
    pub n_labels: usize,
    /// Per task id (0..=max task id): the most probable label, `None` for a
    /// task without votes.
    pub labels: Vec<Option<u8>>,
    /// Per task, K probabilities (flat, task-major); all 0 for a task without votes.
    pub posteriors: Vec<f64>,
    /// Per worker id, a K x K matrix (flat, worker-major, then true label, then
    /// observed label) of P(observed | true); all 0 for a worker without votes.
    pub confusions: Vec<f64>,
    /// The class priors.
    pub priors: Vec<f64>,
    /// EM iterations run.
    pub iterations: u32,
    /// The evidence lower bound per vote after each iteration.
    pub loss_history: Vec<f64>,
}

impl DawidSkeneFit {
    /// The K probabilities of `task`.
    pub fn posterior(&self, task: u32) -> &[f64] {
        let k = self.n_labels;
        &self.posteriors[task as usize * k..(task as usize + 1) * k]
    }

    /// P(`observed` | `truth`) for `worker`.
    pub fn confusion(&self, worker: u32, truth: u8, observed: u8) -> f64 {
        let k = self.n_labels;
        self.confusions[(worker as usize * k + truth as usize) * k + observed as usize]
    }
}

/// The votes grouped by task, each reduced to its (worker, class) row.
struct ByTask {
    /// Votes of task `t` are `rows[start[t]..start[t + 1]]`.
    start: Vec<usize>,
    /// `worker * classes + class` of each vote.
    rows: Vec<u32>,
}

/// Runs Dawid–Skene EM on `(task, worker, label)` votes with labels in
/// `0..n_labels`. Ids are dense indices: the output has one entry per id up
/// to the largest seen.
pub fn dawid_skene(
    votes: &[(u32, u32, u8)],
    n_labels: usize,
    options: &DawidSkeneOptions,
) -> Result<DawidSkeneFit, DawidSkeneError> {
    fit(votes, n_labels, options, None)
}

/// Confusion matrices to start the EM from instead of the majority vote: a
/// previous fit's, so a fit over a window that moved a little converges in a
/// few iterations.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmStart {
    /// Per worker id of the new votes, a K x K matrix laid out as
    /// [`DawidSkeneFit::confusions`]; a worker whose matrix is all zeros (or
    /// not finite) starts from the majority vote.
    pub confusions: Vec<f64>,
}

/// [`dawid_skene`] started from `warm`'s confusions. Only when every label is
/// in use (otherwise it starts as a cold fit does).
pub fn dawid_skene_warm(
    votes: &[(u32, u32, u8)],
    n_labels: usize,
    options: &DawidSkeneOptions,
    warm: &WarmStart,
) -> Result<DawidSkeneFit, DawidSkeneError> {
    fit(votes, n_labels, options, Some(warm))
}

fn fit(
    votes: &[(u32, u32, u8)],
    n_labels: usize,
    options: &DawidSkeneOptions,
    warm: Option<&WarmStart>,
) -> Result<DawidSkeneFit, DawidSkeneError> {
    if !(2..=256).contains(&n_labels) {
        return Err(DawidSkeneError::LabelCount(n_labels));
    }
    if let Some(&(_, _, label)) = votes.iter().find(|v| usize::from(v.2) >= n_labels) {
        return Err(DawidSkeneError::LabelOutOfRange { label, n_labels });
    }
    if votes.is_empty() {
        return Ok(DawidSkeneFit {
            n_labels,
            labels: Vec::new(),
            posteriors: Vec::new(),
            confusions: Vec::new(),
            priors: vec![0.0; n_labels],
            iterations: 0,
            loss_history: Vec::new(),
        });
    }
    let n_tasks = votes.iter().map(|v| v.0 as usize + 1).max().unwrap_or(0);
    let n_workers = votes.iter().map(|v| v.1 as usize + 1).max().unwrap_or(0);

    // Classes are the labels in use, in label order, so ties still go to the
    // smallest label.
    let mut class_of = vec![usize::MAX; n_labels];
    for v in votes {
        class_of[usize::from(v.2)] = 0;
    }
    let labels_used: Vec<u8> = (0..n_labels)
        .filter(|l| class_of[*l] == 0)
        .map(|l| l as u8)
        .collect();
    for (c, l) in labels_used.iter().enumerate() {
        class_of[usize::from(*l)] = c;
    }
    let k = labels_used.len();
    let by_task = group_by_task(votes, n_tasks, &class_of, k);
    let active: Vec<usize> = (0..n_tasks)
        .filter(|t| by_task.start[t + 1] > by_task.start[*t])
        .collect();

    let mut used = vec![false; n_workers * k];
    for row in &by_task.rows {
        used[*row as usize] = true;
    }

    // Majority-vote start: the share of each class among the task's votes.
    let mut probas = vec![0.0; n_tasks * k];
    for &t in &active {
        let rows = &by_task.rows[by_task.start[t]..by_task.start[t + 1]];
        for row in rows {
            probas[t * k + *row as usize % k] += 1.0;
        }
        let n = rows.len() as f64;
        probas[t * k..(t + 1) * k].iter_mut().for_each(|p| *p /= n);
    }
    let mut priors = mean_posterior(&probas, &active, k);
    let mut errors = vec![0.0; n_workers * k * k];
    accumulate(&by_task, &active, &probas, k, &mut errors);
    if let Some(warm) = warm.filter(|_| k == n_labels) {
        for w in 0..n_workers {
            let Some(m) = warm.confusions.get(w * k * k..(w + 1) * k * k) else {
                break;
            };
            if m.iter().all(|x| x.is_finite()) && m.iter().any(|x| *x > 0.0) {
                for observed in 0..k {
                    for truth in 0..k {
                        errors[(w * k + observed) * k + truth] = m[truth * k + observed];
                    }
                }
            }
        }
    }
    normalise_errors(&mut errors, &used, k);

    let mut iterations = 0;
    let mut loss_history = Vec::new();
    let mut loss = f64::NEG_INFINITY;
    while iterations < options.max_iter {
        e_step(&by_task, &active, &priors, &errors, k, &mut probas);
        priors = mean_posterior(&probas, &active, k);
        errors.fill(0.0);
        accumulate(&by_task, &active, &probas, k, &mut errors);
        normalise_errors(&mut errors, &used, k);
        iterations += 1;
        let new_loss = evidence_lower_bound(&by_task, &active, &probas, &priors, &errors, k)
            / votes.len() as f64;
        loss_history.push(new_loss);
        if new_loss - loss < options.tol {
            break;
        }
        loss = new_loss;
    }

    Ok(expand(
        n_labels,
        &labels_used,
        &active,
        &probas,
        &priors,
        &errors,
        &used,
        n_workers,
        iterations,
        loss_history,
    ))
}

/// Groups votes by task with a stable counting sort (votes keep their order
/// within a task, as crowd-kit sums them).
fn group_by_task(votes: &[(u32, u32, u8)], n_tasks: usize, class_of: &[usize], k: usize) -> ByTask {
    let mut start = vec![0usize; n_tasks + 1];
    for v in votes {
        start[v.0 as usize + 1] += 1;
    }
    for t in 0..n_tasks {
        start[t + 1] += start[t];
    }
    let mut next = start.clone();
    let mut rows = vec![0u32; votes.len()];
    for &(task, worker, label) in votes {
        let slot = &mut next[task as usize];
        rows[*slot] = (worker as usize * k + class_of[usize::from(label)]) as u32;
        *slot += 1;
    }
    ByTask { start, rows }
}

fn mean_posterior(probas: &[f64], active: &[usize], k: usize) -> Vec<f64> {
    let mut sums = vec![0.0; k];
    for &t in active {
        for (s, p) in sums.iter_mut().zip(&probas[t * k..(t + 1) * k]) {
            *s += p;
        }
    }
    sums.iter().map(|s| s / active.len() as f64).collect()
}

/// Adds each task's posterior to the error rows of its votes.
fn accumulate(by_task: &ByTask, active: &[usize], probas: &[f64], k: usize, errors: &mut [f64]) {
    for &t in active {
        let p = &probas[t * k..(t + 1) * k];
        for row in &by_task.rows[by_task.start[t]..by_task.start[t + 1]] {
            let e = &mut errors[*row as usize * k..(*row as usize + 1) * k];
            for (e, p) in e.iter_mut().zip(p) {
                *e += p;
            }
        }
    }
}

/// Floors the rows a worker used at `EPS` and normalises each true-class
/// column over them.
fn normalise_errors(errors: &mut [f64], used: &[bool], k: usize) {
    for (worker, block) in errors.chunks_exact_mut(k * k).enumerate() {
        let rows = &used[worker * k..(worker + 1) * k];
        let mut column = vec![0.0; k];
        for (row, in_use) in block.chunks_exact_mut(k).zip(rows) {
            if *in_use {
                for (e, s) in row.iter_mut().zip(column.iter_mut()) {
                    *e = e.max(EPS);
                    *s += *e;
                }
            }
        }
        for (row, in_use) in block.chunks_exact_mut(k).zip(rows) {
            if *in_use {
                for (e, s) in row.iter_mut().zip(&column) {
                    *e /= s;
                }
            }
        }
    }
}

fn e_step(
    by_task: &ByTask,
    active: &[usize],
    priors: &[f64],
    errors: &[f64],
    k: usize,
    probas: &mut [f64],
) {
    let log_errors: Vec<f64> = errors.iter().map(|e| e.log2()).collect();
    let log_priors: Vec<f64> = priors.iter().map(|p| p.max(EPS).log2()).collect();
    let mut ll = vec![0.0; k];
    for &t in active {
        ll.fill(0.0);
        for row in &by_task.rows[by_task.start[t]..by_task.start[t + 1]] {
            let e = &log_errors[*row as usize * k..(*row as usize + 1) * k];
            for (l, e) in ll.iter_mut().zip(e) {
                *l += e;
            }
        }
        let p = &mut probas[t * k..(t + 1) * k];
        let mut max = f64::NEG_INFINITY;
        for (l, lp) in ll.iter_mut().zip(&log_priors) {
            *l += lp;
            max = max.max(*l);
        }
        let mut sum = 0.0;
        for (p, l) in p.iter_mut().zip(&ll) {
            *p = (l - max).exp2();
            sum += *p;
        }
        p.iter_mut().for_each(|p| *p /= sum);
    }
}

/// crowd-kit's evidence lower bound (natural logs), not yet divided by the
/// number of votes.
fn evidence_lower_bound(
    by_task: &ByTask,
    active: &[usize],
    probas: &[f64],
    priors: &[f64],
    errors: &[f64],
    k: usize,
) -> f64 {
    let log_priors: Vec<f64> = priors.iter().map(|p| p.max(EPS).ln()).collect();
    // Rows a worker never used hold 0 (ln = -inf) but are never looked up.
    let log_errors: Vec<f64> = errors.iter().map(|e| e.ln()).collect();
    let mut total = 0.0;
    let mut terms = vec![0.0; k];
    for &t in active {
        let rows = &by_task.rows[by_task.start[t]..by_task.start[t + 1]];
        terms.fill(0.0);
        for row in rows {
            let e = &log_errors[*row as usize * k..(*row as usize + 1) * k];
            for ((s, e), lp) in terms.iter_mut().zip(e).zip(&log_priors) {
                *s += e + lp;
            }
        }
        for (p, s) in probas[t * k..(t + 1) * k].iter().zip(&terms) {
            let floored = p.max(EPS);
            total += p * s - floored * floored.ln();
        }
    }
    total
}

/// Maps the classes in use back to the caller's labels.
#[allow(clippy::too_many_arguments)]
fn expand(
    n_labels: usize,
    labels_used: &[u8],
    active: &[usize],
    probas: &[f64],
    priors: &[f64],
    errors: &[f64],
    used: &[bool],
    n_workers: usize,
    iterations: u32,
    loss_history: Vec<f64>,
) -> DawidSkeneFit {
    let k = labels_used.len();
    let n_tasks = probas.len() / k.max(1);
    let mut labels = vec![None; n_tasks];
    let mut posteriors = vec![0.0; n_tasks * n_labels];
    for &t in active {
        let p = &probas[t * k..(t + 1) * k];
        let mut best = 0;
        for c in 1..k {
            if p[c] > p[best] {
                best = c;
            }
        }
        labels[t] = Some(labels_used[best]);
        for (c, l) in labels_used.iter().enumerate() {
            posteriors[t * n_labels + usize::from(*l)] = p[c];
        }
    }
    let mut full_priors = vec![0.0; n_labels];
    for (c, l) in labels_used.iter().enumerate() {
        full_priors[usize::from(*l)] = priors[c];
    }
    let mut confusions = vec![0.0; n_workers * n_labels * n_labels];
    for w in 0..n_workers {
        for (observed, lo) in labels_used.iter().enumerate() {
            if !used[w * k + observed] {
                continue;
            }
            for (truth, lt) in labels_used.iter().enumerate() {
                let at = (w * n_labels + usize::from(*lt)) * n_labels + usize::from(*lo);
                confusions[at] = errors[(w * k + observed) * k + truth];
            }
        }
    }
    DawidSkeneFit {
        n_labels,
        labels,
        posteriors,
        confusions,
        priors: full_priors,
        iterations,
        loss_history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(votes: &[(u32, u32, u8)], k: usize) -> DawidSkeneFit {
        dawid_skene(votes, k, &DawidSkeneOptions::default()).unwrap()
    }

    #[test]
    fn unanimous_tasks_get_their_label_and_tasks_without_votes_get_none() {
        let votes = [
            (0, 0, 1),
            (0, 1, 1),
            (0, 2, 1),
            (2, 0, 0),
            (2, 1, 0),
            (2, 2, 0),
        ];
        let f = fit(&votes, 2);
        assert_eq!(f.labels, vec![Some(1), None, Some(0)]);
        assert!(f.posterior(0)[1] > 0.99);
        assert_eq!(f.posterior(1), &[0.0, 0.0]);
        assert!((f.priors.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_worker_who_always_flips_the_label_is_read_backwards() {
        // Workers 0, 1 and 3 agree on tasks 0..8; worker 2 always says the
        // opposite, so EM learns that 2 flips the label.
        let mut votes = Vec::new();
        for t in 0..8u32 {
            let label = (t % 2) as u8;
            votes.extend([
                (t, 0, label),
                (t, 1, label),
                (t, 3, label),
                (t, 2, 1 - label),
            ]);
        }
        // Task 8 has worker 2's "1" alone: read as a 0.
        votes.push((8, 2, 1));
        let f = fit(&votes, 2);
        assert_eq!(f.labels[8], Some(0));
        assert!(f.confusion(2, 0, 1) > 0.9, "worker 2 flips 0 to 1");
        assert!(f.confusion(3, 0, 0) > 0.9, "worker 3 is right");
        let rows: f64 = (0..2).map(|o| f.confusion(3, 1, o)).sum();
        assert!((rows - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_tie_goes_to_the_smallest_label() {
        let f = fit(&[(0, 0, 0), (0, 1, 1)], 2);
        assert_eq!(f.posterior(0)[0], f.posterior(0)[1]);
        assert_eq!(f.labels, vec![Some(0)]);
    }

    #[test]
    fn labels_nobody_uses_are_not_classes() {
        let votes = [(0, 0, 0), (0, 1, 0), (1, 0, 2), (1, 1, 2), (1, 2, 0)];
        let f = fit(&votes, 3);
        assert_eq!(f.labels, vec![Some(0), Some(2)]);
        assert_eq!(f.priors[1], 0.0);
        assert_eq!(f.posterior(0)[1], 0.0);
        assert_eq!(f.confusion(0, 1, 0), 0.0);
    }

    #[test]
    fn a_warm_start_from_the_last_fit_agrees_with_a_cold_fit_in_fewer_iterations() {
        // Noisy workers of known accuracy over 400 tasks: a deterministic
        // pseudo-random stream, so the test is the same every run.
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let accuracy = [0.95, 0.9, 0.85, 0.8, 0.7, 0.65];
        let mut votes = Vec::new();
        for t in 0..400u32 {
            let truth = u8::from(next() < 0.3);
            for (w, a) in accuracy.iter().enumerate() {
                if next() < 0.6 {
                    let right = next() < *a;
                    votes.push((t, w as u32, if right { truth } else { 1 - truth }));
                }
            }
        }
        let previous = fit(&votes[..votes.len() * 9 / 10], 2);
        let cold = fit(&votes, 2);
        let warm = dawid_skene_warm(
            &votes,
            2,
            &DawidSkeneOptions::default(),
            &WarmStart {
                confusions: previous.confusions.clone(),
            },
        )
        .unwrap();
        assert!(
            warm.iterations <= cold.iterations,
            "{} > {}",
            warm.iterations,
            cold.iterations
        );
        let same = (0..400)
            .filter(|t| warm.labels[*t] == cold.labels[*t])
            .count();
        assert!(same >= 398, "{same} of 400 labels agree");
        for w in 0..accuracy.len() as u32 {
            assert!((warm.confusion(w, 0, 0) - cold.confusion(w, 0, 0)).abs() < 0.02);
        }
    }

    #[test]
    fn a_warm_start_with_unknown_workers_starts_them_from_the_majority() {
        let votes = [
            (0, 0, 1),
            (0, 1, 1),
            (0, 2, 1),
            (1, 0, 0),
            (1, 1, 0),
            (1, 2, 0),
        ];
        let warm = WarmStart {
            confusions: vec![0.0; 3 * 4],
        };
        let f = dawid_skene_warm(&votes, 2, &DawidSkeneOptions::default(), &warm).unwrap();
        assert_eq!(f, fit(&votes, 2));
    }

    #[test]
    fn it_converges_before_the_iteration_cap_on_clean_data() {
        let votes: Vec<_> = (0..50u32)
            .flat_map(|t| (0..5u32).map(move |w| (t, w, u8::from(t % 3 == 0))))
            .collect();
        let f = fit(&votes, 2);
        assert!(f.iterations < 100, "{}", f.iterations);
        assert_eq!(f.loss_history.len(), f.iterations as usize);
        for t in 0..50u32 {
            assert_eq!(f.labels[t as usize], Some(u8::from(t % 3 == 0)));
        }
    }

    #[test]
    fn bad_label_counts_and_out_of_range_labels_are_refused() {
        let opts = DawidSkeneOptions::default();
        assert_eq!(
            dawid_skene(&[], 1, &opts),
            Err(DawidSkeneError::LabelCount(1))
        );
        assert_eq!(
            dawid_skene(&[(0, 0, 2)], 2, &opts),
            Err(DawidSkeneError::LabelOutOfRange {
                label: 2,
                n_labels: 2
            })
        );
        let empty = dawid_skene(&[], 2, &opts).unwrap();
        assert!(empty.labels.is_empty());
        assert_eq!(empty.iterations, 0);
    }
}
