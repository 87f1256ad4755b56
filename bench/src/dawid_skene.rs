//! The `dawid-skene` benchmark: batch EM on a synthetic vote set of about a
//! million votes, timed as the median of several runs.

use anyhow::Context;
use spotcheck_shared::dawid_skene::{DawidSkeneFit, DawidSkeneOptions, dawid_skene};
use spotcheck_simulation::crowdsim::vote_set;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

/// What to generate, time and write.
pub struct Args {
    pub votes: usize,
    pub votes_per_task: usize,
    pub workers: usize,
    pub seed: u64,
    pub runs: usize,
    pub csv_out: Option<PathBuf>,
    pub labels_out: Option<PathBuf>,
}

/// Generates the votes, times the EM and prints the figures.
pub fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.votes_per_task > 0 && args.runs > 0,
        "need votes per task and runs > 0"
    );
    let tasks = args.votes / args.votes_per_task;
    let set = vote_set(args.seed, tasks, args.votes_per_task, args.workers);
    println!(
        "{} votes on {tasks} tasks by {} workers, seed {}",
        set.votes.len(),
        args.workers,
        args.seed
    );
    if let Some(path) = &args.csv_out {
        write_csv(path, &set.votes).with_context(|| format!("writing {}", path.display()))?;
    }

    let mut seconds = Vec::with_capacity(args.runs);
    let mut fit = None;
    for _ in 0..args.runs {
        let started = Instant::now();
        let result = dawid_skene(&set.votes, 3, &DawidSkeneOptions::default())?;
        seconds.push(started.elapsed().as_secs_f64());
        fit = Some(result);
    }
    let fit = fit.context("at least one run")?;
    seconds.sort_by(f64::total_cmp);
    let right = set
        .truth
        .iter()
        .zip(&fit.labels)
        .filter(|(t, l)| Some(**t) == **l)
        .count();
    println!(
        "rust dawid-skene: {:.3} s (median of {}), {} iterations, accuracy {:.4}",
        seconds[seconds.len() / 2],
        args.runs,
        fit.iterations,
        right as f64 / tasks.max(1) as f64
    );
    if let Some(path) = &args.labels_out {
        write_labels(path, &fit).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn write_csv(path: &PathBuf, votes: &[(u32, u32, u8)]) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "task,worker,label")?;
    for (task, worker, label) in votes {
        writeln!(out, "{task},{worker},{label}")?;
    }
    out.flush()
}

fn write_labels(path: &PathBuf, fit: &DawidSkeneFit) -> anyhow::Result<()> {
    let labels: serde_json::Map<String, serde_json::Value> = fit
        .labels
        .iter()
        .enumerate()
        .filter_map(|(task, label)| Some((task.to_string(), (*label)?.into())))
        .collect();
    let mut out = BufWriter::new(File::create(path)?);
    serde_json::to_writer(&mut out, &labels)?;
    out.flush()?;
    Ok(())
}
