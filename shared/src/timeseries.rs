//! Time buckets of a dashboard series: a window cut into about
//! [`TARGET_BUCKETS`] equal buckets of whole minutes, aligned on the epoch so the
//! same instant always falls in the same bucket whoever asks.

/// About how many buckets a window is cut into (a series has up to two more:
/// its first and last buckets reach outside the window).
pub const TARGET_BUCKETS: u64 = 48;

/// The shortest window a series may cover, in seconds.
pub const MIN_WINDOW_SECS: u64 = 60;

/// The longest window a series may cover, in seconds (a week).
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// The buckets of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// Length of each bucket, in seconds (a multiple of 60).
    pub bucket_secs: i64,
    /// Start of the first bucket, in seconds since the epoch.
    pub start_secs: i64,
    /// Number of buckets; the last one holds `now`.
    pub count: usize,
}

impl Buckets {
    /// The buckets covering the `window_secs` up to `now_secs`, the current
    /// (partial) bucket last. `None` outside [`MIN_WINDOW_SECS`]..=[`MAX_WINDOW_SECS`].
    pub fn covering(window_secs: u64, now_secs: i64) -> Option<Self> {
        if !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window_secs) {
            return None;
        }
        let minutes = window_secs.div_ceil(60).div_ceil(TARGET_BUCKETS).max(1);
        let bucket_secs = (minutes * 60) as i64;
        let start_secs = (now_secs - window_secs as i64).div_euclid(bucket_secs) * bucket_secs;
        let end = now_secs.div_euclid(bucket_secs) * bucket_secs + bucket_secs;
        Some(Self {
            bucket_secs,
            start_secs,
            count: ((end - start_secs) / bucket_secs) as usize,
        })
    }

    /// The end of the last bucket, in seconds since the epoch.
    pub fn end_secs(&self) -> i64 {
        self.start_secs + self.bucket_secs * self.count as i64
    }

    /// The bucket an instant falls in, if any.
    pub fn index_of(&self, at_secs: i64) -> Option<usize> {
        if at_secs < self.start_secs || at_secs >= self.end_secs() {
            return None;
        }
        Some(((at_secs - self.start_secs) / self.bucket_secs) as usize)
    }

    /// The start of bucket `i`, in seconds since the epoch.
    pub fn start_of(&self, i: usize) -> i64 {
        self.start_secs + self.bucket_secs * i as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_day_is_cut_into_half_hours_ending_with_the_current_one() {
        let now = 1_800_000_000 + 17 * 60 + 5;
        let b = Buckets::covering(86_400, now).unwrap();
        assert_eq!(b.bucket_secs, 1800);
        assert_eq!(b.count, 49);
        assert_eq!(b.index_of(now), Some(48));
        assert_eq!(b.index_of(now - 86_400), Some(0));
        assert_eq!(b.start_secs % 1800, 0);
        assert_eq!(b.index_of(b.start_secs - 1), None);
        assert_eq!(b.index_of(b.end_secs()), None);
    }

    #[test]
    fn short_windows_use_one_minute_buckets_and_odd_windows_are_refused() {
        let b = Buckets::covering(600, 120).unwrap();
        assert_eq!((b.bucket_secs, b.count), (60, 11));
        assert_eq!(Buckets::covering(59, 0), None);
        assert_eq!(Buckets::covering(MAX_WINDOW_SECS + 1, 0), None);
    }

    proptest! {
        #[test]
        fn every_instant_of_the_window_has_exactly_one_bucket(
            window in MIN_WINDOW_SECS..=MAX_WINDOW_SECS,
            now in 0i64..4_000_000_000,
            back in 0u64..=MAX_WINDOW_SECS,
        ) {
            let b = Buckets::covering(window, now).unwrap();
            prop_assert!(b.count as u64 <= TARGET_BUCKETS + 2);
            prop_assert!(b.end_secs() > now);
            prop_assert!(b.bucket_secs * b.count as i64 >= window as i64);
            let at = now - (back % (window + 1)) as i64;
            let i = b.index_of(at).unwrap();
            prop_assert!(b.start_of(i) <= at && at < b.start_of(i) + b.bucket_secs);
        }
    }
}
