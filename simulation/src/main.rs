//! `spotcheck-simulation crowd`: the crowd benchmark, at the two standard
//! sizes (5,000 volunteers x 200,000 tasks, then 200 x 20,000) or at the size
//! given with `--volunteers`, `--tasks` and `--seed`.

use spotcheck_simulation::arena::ArenaConfig;
use spotcheck_simulation::crowd_bench::Bench;
use std::process::ExitCode;

const USAGE: &str = "usage: spotcheck-simulation crowd [--volunteers N] [--tasks N] [--seed N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(("crowd", rest)) = args.split_first().map(|(c, r)| (c.as_str(), r)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (mut volunteers, mut tasks, mut seed) = (None, None, 1u64);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--volunteers", Some(v)) if v >= 10 => volunteers = Some(v as usize),
            ("--tasks", Some(v)) if v > 0 => tasks = Some(v as usize),
            ("--seed", Some(v)) => seed = v,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let sizes = match (volunteers, tasks) {
        (None, None) => vec![(5_000, 200_000), (200, 20_000)],
        (v, t) => vec![(v.unwrap_or(200), t.unwrap_or(20_000))],
    };
    let mut all_met = true;
    for (volunteers, tasks) in sizes {
        let config = ArenaConfig {
            volunteers,
            tasks,
            seed,
            ..ArenaConfig::default()
        };
        let bench = Bench::run(config.clone());
        all_met &= bench.missed_targets().is_empty();
        println!("{}", bench.render(&config));
    }
    if all_met {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
