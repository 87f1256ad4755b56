//! A volunteer's streak: the number of consecutive UTC days, ending today or
//! yesterday, on which they voted at least once.

use chrono::NaiveDate;

/// The streak ending at `today` (or at yesterday, when nothing was voted yet
/// today, so a streak is not lost before the day is over), from the days with a
/// vote in any order (repeats allowed).
pub fn streak_days(days: &[NaiveDate], today: NaiveDate) -> u32 {
    let mut days: Vec<NaiveDate> = days.iter().copied().filter(|d| *d <= today).collect();
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    let Some(&latest) = days.first() else {
        return 0;
    };
    if today.signed_duration_since(latest).num_days() > 1 {
        return 0;
    }
    let mut streak = 1;
    for pair in days.windows(2) {
        if pair[0].signed_duration_since(pair[1]).num_days() != 1 {
            break;
        }
        streak += 1;
    }
    streak
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
    }

    #[test]
    fn consecutive_days_ending_today_or_yesterday_count() {
        assert_eq!(streak_days(&[d(10), d(9), d(9), d(8), d(6)], d(10)), 3);
        assert_eq!(
            streak_days(&[d(8), d(9)], d(10)),
            2,
            "yesterday still holds"
        );
        assert_eq!(streak_days(&[d(8)], d(10)), 0, "a missed day breaks it");
        assert_eq!(streak_days(&[], d(10)), 0);
        assert_eq!(streak_days(&[d(11)], d(10)), 0, "a future day is ignored");
    }
}
