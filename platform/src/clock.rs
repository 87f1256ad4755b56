//! The time source of deadlines: the system clock, or (outside production)
//! the system clock shifted by a number of seconds read from a file, so a
//! test can move every process past a deadline at once without waiting.

use chrono::{DateTime, Duration, Utc};
use std::path::PathBuf;

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// A file holding an offset in seconds (absent or unreadable: no offset).
    offset_file: Option<PathBuf>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system clock shifted by the seconds written in `path`, read at every call.
    pub fn offset_by_file(path: PathBuf) -> Self {
        Self {
            offset_file: Some(path),
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self
            .offset_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Utc::now() + Duration::seconds(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_file_shifts_now_and_a_missing_one_does_not() {
        let dir = std::env::temp_dir().join(format!("clock-{}", uuid::Uuid::new_v4()));
        let clock = Clock::offset_by_file(dir.clone());
        let drift = (clock.now() - Utc::now()).num_seconds().abs();
        assert!(drift <= 1, "no file, no offset");
        std::fs::write(&dir, "3600\n").unwrap();
        let ahead = (clock.now() - Utc::now()).num_seconds();
        assert!((3599..=3601).contains(&ahead), "{ahead}");
        std::fs::remove_file(&dir).unwrap();
    }
}
