//! Month partitions of the history tables: their names and bounds, and which of
//! them retention may remove.
//!
//! Votes and decisions are partitioned by the month of their task's id: task ids
//! are UUIDv7, whose first 48 bits are the creation time in milliseconds, and
//! PostgreSQL compares uuids byte by byte, so a month of tasks is one uuid
//! range. A task's votes and decision therefore share a partition, and the
//! unique key (task, volunteer) that guards I2 and I3 still holds across the
//! whole table. The audit log is partitioned by the month of its `at` column.
//! Rows outside every month partition (ids that are not v7, a month not created
//! yet) land in the table's default partition and are moved out when their
//! month is created.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use uuid::Uuid;

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month holding `at`.
    pub fn of(at: DateTime<Utc>) -> Month {
        Month {
            year: at.year(),
            month: at.month(),
        }
    }

    /// The month holding the creation time of a UUIDv7 (`None` for other versions).
    pub fn of_v7(id: Uuid) -> Option<Month> {
        (id.get_version_num() == 7).then(|| Month::of_uuid_time(id))
    }

    /// The month a uuid's first 48 bits mean as a v7 timestamp, whatever its
    /// version (where any uuid sorts among the month partitions' bounds).
    pub fn of_uuid_time(id: Uuid) -> Month {
        let b = id.as_bytes();
        let ms = b[..6]
            .iter()
            .fold(0i64, |acc, x| (acc << 8) | i64::from(*x));
        Month::of(Utc.timestamp_millis_opt(ms).single().unwrap_or_default())
    }

    /// Its first instant.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .expect("the first of a month at midnight UTC exists")
    }

    /// The month `n` months later (earlier when negative).
    pub fn plus(self, n: i32) -> Month {
        let index = self.year * 12 + self.month as i32 - 1 + n;
        Month {
            year: index.div_euclid(12),
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    /// `y2026m03`, the suffix of its partitions' names.
    pub fn suffix(self) -> String {
        format!("y{:04}m{:02}", self.year, self.month)
    }

    /// Reads a suffix back.
    pub fn parse_suffix(s: &str) -> Option<Month> {
        let rest = s.strip_prefix('y')?;
        let (year, month) = rest.split_once('m')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let month = Month {
            year: year.parse().ok()?,
            month: month.parse().ok()?,
        };
        (1..=12).contains(&month.month).then_some(month)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The smallest UUIDv7 created at or after `at` (every later one sorts above it).
pub fn uuid_floor(at: DateTime<Utc>) -> Uuid {
    let ms = at.timestamp_millis().max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// A partitioned history table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `votes`, by the month of `task_id`.
    Votes,
    /// `decisions`, by the month of `task_id`.
    Decisions,
    /// `audit_log`, by the month of `at`.
    AuditLog,
}

impl Table {
    /// Every partitioned table, in the order retention handles them (a
    /// month's votes go before its decisions).
    pub const ALL: [Table; 3] = [Table::Votes, Table::Decisions, Table::AuditLog];

    /// The parent table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Votes => "votes",
            Table::Decisions => "decisions",
            Table::AuditLog => "audit_log",
        }
    }

    /// The partition key column.
    pub fn key(self) -> &'static str {
        match self {
            Table::Votes | Table::Decisions => "task_id",
            Table::AuditLog => "at",
        }
    }

    /// The name of its partition for `month`.
    pub fn partition(self, month: Month) -> String {
        format!("{}_{}", self.name(), month.suffix())
    }

    /// The name of its default partition.
    pub fn default_partition(self) -> String {
        format!("{}_default", self.name())
    }

    /// The month of one of its partitions' names (`None` for other names).
    pub fn month_of(self, partition: &str) -> Option<Month> {
        let suffix = partition.strip_prefix(self.name())?.strip_prefix('_')?;
        Month::parse_suffix(suffix)
    }

    /// The partition bound values for `month`, as SQL literals `(from, to)`.
    pub fn bounds(self, month: Month) -> (String, String) {
        let (from, to) = (month.start(), month.plus(1).start());
        match self {
            Table::Votes | Table::Decisions => (
                format!("'{}'", uuid_floor(from)),
                format!("'{}'", uuid_floor(to)),
            ),
            Table::AuditLog => (
                format!("'{}'", from.to_rfc3339()),
                format!("'{}'", to.to_rfc3339()),
            ),
        }
    }

    /// Parses a table name.
    pub fn parse(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// How many whole months before the current one each table keeps (0 keeps
/// everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Votes.
    pub votes_months: u32,
    /// Decisions.
    pub decisions_months: u32,
    /// The audit log.
    pub audit_months: u32,
}

impl Default for Retention {
    /// Two years of votes and decisions, seven of the audit log.
    fn default() -> Self {
        Retention {
            votes_months: 24,
            decisions_months: 24,
            audit_months: 84,
        }
    }
}

impl Retention {
    /// The months kept for `table` (0: all).
    pub fn months(&self, table: Table) -> u32 {
        match table {
            Table::Votes => self.votes_months,
            Table::Decisions => self.decisions_months,
            Table::AuditLog => self.audit_months,
        }
    }

    /// Whether `table`'s partition for `month` is past retention at `now`: the
    /// current month and the `months` before it are kept.
    pub fn expired(&self, table: Table, month: Month, now: DateTime<Utc>) -> bool {
        let keep = self.months(table);
        keep > 0 && month < Month::of(now).plus(-(keep as i32))
    }
}

/// The months whose partitions should exist at `now`: the previous one (late
/// rows of a month that just ended), the current one and `ahead` more.
pub fn months_to_create(now: DateTime<Utc>, ahead: u32) -> Vec<Month> {
    let current = Month::of(now);
    (-1..=ahead as i32).map(|n| current.plus(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn months_step_across_years() {
        let dec = Month {
            year: 2026,
            month: 12,
        };
        assert_eq!(
            dec.plus(1),
            Month {
                year: 2027,
                month: 1
            }
        );
        assert_eq!(
            dec.plus(-12),
            Month {
                year: 2025,
                month: 12
            }
        );
        assert_eq!(
            dec.plus(-23),
            Month {
                year: 2025,
                month: 1
            }
        );
        assert_eq!(dec.start(), at("2026-12-01T00:00:00Z"));
        assert_eq!(dec.to_string(), "2026-12");
    }

    #[test]
    fn names_read_back() {
        let m = Month::of(at("2027-03-15T10:00:00Z"));
        assert_eq!(Table::Votes.partition(m), "votes_y2027m03");
        assert_eq!(Table::AuditLog.partition(m), "audit_log_y2027m03");
        assert_eq!(Table::Votes.month_of("votes_y2027m03"), Some(m));
        assert_eq!(Table::AuditLog.month_of("audit_log_y2027m03"), Some(m));
        assert_eq!(Table::Votes.month_of("votes_default"), None);
        assert_eq!(Table::Votes.month_of("votes_y2027m13"), None);
        assert_eq!(Table::Decisions.month_of("votes_y2027m03"), None);
        assert_eq!(Table::parse("audit_log"), Some(Table::AuditLog));
    }

    #[test]
    fn a_v7_id_falls_inside_its_months_bounds() {
        let now = at("2026-12-05T07:00:00Z");
        let month = Month::of(now);
        let id = Uuid::now_v7();
        let at_id = Month::of_v7(id).unwrap();
        let (from, to) = (uuid_floor(at_id.start()), uuid_floor(at_id.plus(1).start()));
        assert!(from <= id && id < to);
        // Byte order is time order.
        assert!(uuid_floor(month.start()) < uuid_floor(month.plus(1).start()));
        assert_eq!(Month::of_v7(Uuid::nil()), None);
        let (lo, hi) = Table::Votes.bounds(month);
        assert_eq!(lo, format!("'{}'", uuid_floor(month.start())));
        assert!(hi > lo);
    }

    #[test]
    fn the_month_of_a_v4_ids_bytes_is_some_month() {
        let id = Uuid::from_bytes([0x01, 0x93, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Month::of_v7(id), None);
        let m = Month::of_uuid_time(id);
        assert!(m.year >= 2024 && m.year <= 2025, "{m}");
    }

    #[test]
    fn retention_keeps_the_current_month_and_those_before_it() {
        let now = at("2026-12-05T07:00:00Z");
        let r = Retention {
            votes_months: 2,
            decisions_months: 0,
            audit_months: 84,
        };
        let m = |y, mo| Month { year: y, month: mo };
        assert!(!r.expired(Table::Votes, m(2026, 12), now));
        assert!(!r.expired(Table::Votes, m(2026, 10), now));
        assert!(r.expired(Table::Votes, m(2026, 9), now));
        assert!(!r.expired(Table::Decisions, m(2000, 1), now), "0 keeps all");
        assert!(!r.expired(Table::AuditLog, m(2020, 1), now));
        assert!(r.expired(Table::AuditLog, m(2019, 11), now));
        assert_eq!(
            months_to_create(now, 2),
            vec![m(2026, 11), m(2026, 12), m(2027, 1), m(2027, 2)]
        );
    }
}
