//! The Kubernetes manifests, checked offline by `scripts/k8s-check.py`: every
//! kustomization renders, core resources pass kubernetes-validate in strict
//! mode, custom resources pass their vendored CRD schemas, and the deployment
//! policy holds. Bad fixtures prove each kind of check still refuses what it
//! should.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python with kubernetes-validate, jsonschema and pyyaml: `SPOTCHECK_PYTHON`
/// (scripts/test.sh exports it), else the repository's `.venv`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SPOTCHECK_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "no Python for the manifest checks: set SPOTCHECK_PYTHON or run scripts/test.sh, \
         which creates .venv with kubernetes-validate, jsonschema and pyyaml"
    );
    venv
}

/// Runs the checker on `targets` (its defaults when empty): whether it passed,
/// and everything it printed.
fn check(targets: &[&Path]) -> (bool, String) {
    let out = Command::new(python())
        .arg(repo_root().join("scripts/k8s-check.py"))
        .args(targets)
        .current_dir(repo_root())
        .output()
        .expect("scripts/k8s-check.py runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_overlay_renders_validates_against_its_schemas_and_meets_the_deployment_policy() {
    let (passed, output) = check(&[]);
    assert!(passed, "the manifests fail their checks:\n{output}");
    for target in ["k8s/base", "k8s/overlays/dev", "k8s/overlays/prod"] {
        let line = output
            .lines()
            .find(|l| l.starts_with(&format!("{target}:")))
            .unwrap_or_else(|| panic!("{target} was not checked:\n{output}"));
        assert!(line.ends_with(": ok"), "{line}");
    }
    // The custom resources were validated, not skipped.
    let prod = output
        .lines()
        .find(|l| l.starts_with("k8s/overlays/prod:"))
        .expect("the prod line");
    for kind in [
        "ScaledObject",
        "TriggerAuthentication",
        "RabbitmqCluster",
        "Cluster",
        "ScheduledBackup",
        "HorizontalPodAutoscaler",
    ] {
        assert!(prod.contains(kind), "prod renders no {kind}: {prod}");
    }
}

#[test]
fn the_checker_refuses_each_bad_manifest_naming_the_rule_it_breaks() {
    let fixtures = repo_root().join("k8s/tests/fixtures");
    let cases = [
        (
            "no-security-context.yaml",
            "[security-context] container app has no securityContext",
        ),
        (
            "latest-image.yaml",
            "[image-tag] container migrate: image ghcr.io/spotcheck/spotcheck:latest uses the `latest` tag",
        ),
        (
            "no-pdb.yaml",
            "Deployment/unbudgeted: [pdb] no PodDisruptionBudget selects its pods",
        ),
        (
            "invalid-scaledobject.yaml",
            "[crd-schema] spec.minReplicaCount: 'two' is not of type 'integer'",
        ),
        (
            "invalid-scaledobject.yaml",
            "[crd-schema] spec.cooldownPeriods: unknown field",
        ),
        (
            "unknown-field.yaml",
            "[schema] spec.ports.0: Additional properties are not allowed",
        ),
        (
            "secret-values.yaml",
            "[no-secret-values] secret values must not be committed",
        ),
        ("open-egress.yaml", "[network-policy] namespace"),
        (
            "open-egress.yaml",
            "[network-policy] anything-goes: egress beyond PostgreSQL, Redis, RabbitMQ and DNS",
        ),
    ];
    for (fixture, expected) in cases {
        let (passed, output) = check(&[&fixtures.join(fixture)]);
        assert!(!passed, "{fixture} passed the checks:\n{output}");
        assert!(
            output.contains(expected),
            "{fixture} did not fail with `{expected}`:\n{output}"
        );
    }
    // Every fixture is exercised above.
    for entry in std::fs::read_dir(&fixtures).expect("the fixtures") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".yaml") {
            assert!(
                cases.iter().any(|(f, _)| *f == name),
                "fixture {name} has no case here"
            );
        }
    }
}
