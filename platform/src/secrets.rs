//! Secrets in configuration: each may be given as `NAME` or as `NAME_FILE` (a
//! path, so a mounted Kubernetes Secret works), and outside development each
//! must be set, must not be a value this project publishes, and must be long
//! enough. A refusal names the setting, never the value.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Fewest characters of a key outside development (the sampling and gold keys
/// are HMAC keys: 32 characters of a random alphabet carry well over 128 bits).
pub const MIN_KEY_CHARS: usize = 32;

/// Fewest characters of a bootstrap password outside development.
pub const MIN_BOOTSTRAP_PASSWORD_CHARS: usize = 16;

/// Values that appear in this project's defaults, README, demo and examples:
/// anyone can read them, so no deployment outside development may use them.
pub const PUBLISHED: &[&str] = &[
    "development-sampling-key",
    "development-gold-key",
    "demo-admin-password",
    "change-me",
    "changeme",
];

/// Whether `env` (the value of `SPOTCHECK_ENV`) is a development deployment.
pub fn is_development(env: &str) -> bool {
    env.eq_ignore_ascii_case("development")
}

/// Reads a secret file: the whole file, less one trailing line break (editors
/// and `echo` add one; Kubernetes Secrets keep what was stored).
pub fn read_file(name: &str, path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{name}_FILE: reading {}", path.display()))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if text.is_empty() {
        bail!("{name}_FILE: {} is empty", path.display());
    }
    Ok(text.to_owned())
}

/// Replaces `value` with the contents of `file` when `NAME_FILE` was given,
/// and forgets the path (so a second call changes nothing). Setting both the
/// variable and its file is refused: which one wins would be a guess.
pub fn take_file(name: &str, value: &mut String, file: &mut Option<PathBuf>) -> anyhow::Result<()> {
    let Some(path) = file.take() else {
        return Ok(());
    };
    if std::env::var_os(name).is_some() {
        bail!("{name} and {name}_FILE are both set: set one of them");
    }
    *value = read_file(name, &path)?;
    Ok(())
}

/// As [`take_file`], for a secret that has no default.
pub fn take_optional_file(
    name: &str,
    value: &mut Option<String>,
    file: &mut Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut text = value.take().unwrap_or_default();
    take_file(name, &mut text, file)?;
    *value = (!text.is_empty()).then_some(text);
    Ok(())
}

/// The rule outside development: `value` is not published and has at least
/// `min_chars` characters. The error names the setting and says how to fix it.
pub fn check(name: &str, value: &str, min_chars: usize) -> anyhow::Result<()> {
    if PUBLISHED
        .iter()
        .any(|p| p.eq_ignore_ascii_case(value.trim()))
    {
        bail!(
            "{name} is a published default; outside development set {name} or {name}_FILE \
             to a secret of your own (at least {min_chars} characters)"
        );
    }
    let chars = value.chars().count();
    if chars < min_chars {
        bail!("{name} has {chars} characters; outside development it needs at least {min_chars}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of the test's own, removed when dropped.
    struct Temp(PathBuf);

    impl Temp {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file_with(text: &str) -> Temp {
        let path = std::env::temp_dir().join(format!("secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        Temp(path)
    }

    #[test]
    fn a_secret_file_is_read_whole_less_one_line_break() {
        let f = file_with("s3cret with  spaces \n");
        let mut value = "default".to_owned();
        let mut path = Some(f.path().to_path_buf());
        take_file("SPOTCHECK_TEST_SECRET_A", &mut value, &mut path).unwrap();
        assert_eq!(value, "s3cret with  spaces ");
        assert!(path.is_none(), "the path is forgotten once read");
        let f = file_with("line\r\n");
        assert_eq!(read_file("X", f.path()).unwrap(), "line");
    }

    #[test]
    fn an_empty_or_missing_file_is_refused_naming_the_setting() {
        let f = file_with("\n");
        let err = read_file("SPOTCHECK_GOLD_KEY", f.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("SPOTCHECK_GOLD_KEY_FILE"),
            "{err:#}"
        );
        let err = read_file("SPOTCHECK_GOLD_KEY", Path::new("/nonexistent/key")).unwrap_err();
        assert!(
            format!("{err:#}").contains("SPOTCHECK_GOLD_KEY_FILE"),
            "{err:#}"
        );
    }

    #[test]
    fn without_a_file_an_optional_secret_keeps_its_value() {
        let mut value = Some("from-env".to_owned());
        take_optional_file("SPOTCHECK_TEST_SECRET_B", &mut value, &mut None).unwrap();
        assert_eq!(value.as_deref(), Some("from-env"));
        let mut none = None;
        take_optional_file("SPOTCHECK_TEST_SECRET_B", &mut none, &mut None).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn published_and_short_values_are_refused_and_the_message_names_the_setting() {
        for value in PUBLISHED {
            let err = check("SPOTCHECK_SAMPLING_KEY", value, 8).unwrap_err();
            assert!(err.to_string().contains("SPOTCHECK_SAMPLING_KEY"));
            assert!(err.to_string().contains("published"));
        }
        let err = check("SPOTCHECK_GOLD_KEY", "short", MIN_KEY_CHARS).unwrap_err();
        assert!(
            err.to_string()
                .contains("SPOTCHECK_GOLD_KEY has 5 characters")
        );
        // Characters, not bytes: 31 two-byte letters are still too short.
        assert!(check("K", &"é".repeat(31), MIN_KEY_CHARS).is_err());
        assert!(check("K", &"é".repeat(32), MIN_KEY_CHARS).is_ok());
    }
}
