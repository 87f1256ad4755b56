//! Our Dawid–Skene gives crowd-kit's labels on the same votes.
//!
//! Needs a Python with crowd-kit: `$SPOTCHECK_PYTHON`, else the workspace's
//! `.venv`. Without one the test is skipped with a notice, except in CI.

use spotcheck_shared::dawid_skene::{DawidSkeneOptions, dawid_skene};
use spotcheck_simulation::crowdsim::vote_set;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

fn python_with_crowdkit() -> Option<String> {
    let python = std::env::var("SPOTCHECK_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python").into());
    let ok = Command::new(&python)
        .args(["-c", "import crowdkit.aggregation"])
        .output()
        .is_ok_and(|out| out.status.success());
    match (ok, std::env::var_os("CI").is_some()) {
        (true, _) => Some(python),
        (false, true) => {
            panic!("{python} with crowd-kit is required in CI (scripts/test.sh installs it)")
        }
        (false, false) => {
            eprintln!(
                "NOTICE: skipping the crowd-kit comparison: {python} lacks crowd-kit; run scripts/test.sh"
            );
            None
        }
    }
}

/// A CSV file of votes that is removed when dropped.
struct VoteFile(PathBuf);

impl VoteFile {
    fn write(name: &str, votes: &[(u32, u32, u8)]) -> Self {
        let path =
            std::env::temp_dir().join(format!("spotcheck-ds-{}-{name}.csv", std::process::id()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("a temp file"));
        writeln!(out, "task,worker,label").unwrap();
        for (t, w, l) in votes {
            writeln!(out, "{t},{w},{l}").unwrap();
        }
        out.flush().unwrap();
        VoteFile(path)
    }
}

impl Drop for VoteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn crowdkit_labels(python: &str, file: &VoteFile) -> BTreeMap<u32, u8> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/py/dawid_skene_reference.py"
    );
    let out = Command::new(python)
        .arg(script)
        .arg(&file.0)
        .output()
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "dawid_skene_reference.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labels: BTreeMap<String, u8> =
        serde_json::from_slice(&out.stdout).expect("a JSON object of labels");
    labels
        .into_iter()
        .map(|(t, l)| (t.parse().expect("a task id"), l))
        .collect()
}

#[test]
fn our_labels_match_crowd_kit_on_at_least_99_5_percent_of_tasks() {
    let Some(python) = python_with_crowdkit() else {
        return;
    };
    // (seed, tasks, votes per task, workers): the usual five votes, and a
    // sparser, spammier crowd with three.
    for (seed, tasks, per_task, workers) in [(11, 5_000, 5, 300), (12, 5_000, 3, 80)] {
        let set = vote_set(seed, tasks, per_task, workers);
        let ours = dawid_skene(&set.votes, 3, &DawidSkeneOptions::default()).unwrap();
        let file = VoteFile::write(&format!("{seed}"), &set.votes);
        let theirs = crowdkit_labels(&python, &file);
        assert_eq!(theirs.len(), tasks, "crowd-kit labelled every task");
        let same = theirs
            .iter()
            .filter(|(t, l)| ours.labels[**t as usize] == Some(**l))
            .count();
        let agreement = same as f64 / tasks as f64;
        assert!(
            agreement >= 0.995,
            "seed {seed}: agreement {agreement} over {tasks} tasks"
        );
    }
}
