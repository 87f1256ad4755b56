//! The analysts' exports: the rows of votes and decisions, written as CSV or
//! JSON lines, with volunteer ids replaced by a keyed hash unless an admin asks
//! for them.
//!
//! A pseudonym is the same for the same volunteer in every export of one
//! deployment (its key), and cannot be turned back into an id or matched across
//! deployments with different keys.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// The written form of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated values with a header line (RFC 4180).
    #[default]
    Csv,
    /// One JSON object a line.
    Jsonl,
}

impl ExportFormat {
    /// The media type of a response in this form.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Jsonl => "application/jsonl",
        }
    }

    /// The file extension of this form.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// What is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportKind {
    /// Every vote cast, review and gold.
    Votes,
    /// Every decision taken on a task.
    Decisions,
}

impl ExportKind {
    /// The name used in routes, file names and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Votes => "votes",
            ExportKind::Decisions => "decisions",
        }
    }

    /// The CSV header line of this kind (without the line end).
    pub fn header(self) -> &'static str {
        match self {
            ExportKind::Votes => VOTE_COLUMNS,
            ExportKind::Decisions => DECISION_COLUMNS,
        }
    }
}

/// Replaces volunteer ids with keyed hashes: `p_` and 32 hex digits of
/// HMAC-SHA256(key, id).
#[derive(Clone)]
pub struct Pseudonyms {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(<key>)")
    }
}

impl Pseudonyms {
    /// Pseudonyms under `key` (any length; at least 32 random bytes in production).
    pub fn new(key: &[u8]) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The pseudonym of `id`.
    pub fn of(&self, id: Uuid) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"spotcheck volunteer pseudonym v1:");
        mac.update(id.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("p_{}", hex::encode(&digest[..16]))
    }
}

/// How volunteer ids are written in an export.
#[derive(Debug, Clone)]
pub enum VolunteerIds {
    /// As they are (an admin asked for them).
    Raw,
    /// As pseudonyms.
    Pseudonymised(Pseudonyms),
}

impl VolunteerIds {
    /// The written form of `id`.
    pub fn write(&self, id: Uuid) -> String {
        match self {
            VolunteerIds::Raw => id.to_string(),
            VolunteerIds::Pseudonymised(p) => p.of(id),
        }
    }
}

const VOTE_COLUMNS: &str =
    "vote_id,task_id,task_kind,listing_id,volunteer,verdict,reasons,note,seconds_taken,created_at";

/// One vote as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoteRow {
    /// The vote.
    pub vote_id: Uuid,
    /// Its task.
    pub task_id: Uuid,
    /// `review` or `gold`.
    #[schema(value_type = crate::task::TaskKind)]
    pub task_kind: String,
    /// The listing inspected.
    pub listing_id: String,
    /// The volunteer's id or pseudonym.
    pub volunteer: String,
    /// `genuine`, `counterfeit` or `unsure`.
    #[schema(value_type = crate::aggregate::Verdict)]
    pub verdict: String,
    /// Reasons given.
    pub reasons: Vec<String>,
    /// The volunteer's note.
    pub note: Option<String>,
    /// Seconds from the lease's grant to the vote.
    pub seconds_taken: Option<f64>,
    /// When it was cast.
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
}

const DECISION_COLUMNS: &str = "task_id,listing_id,round,stratum,inclusion_probability,outcome,votes_genuine,votes_counterfeit,votes_unsure,posterior,escalation_status,decided_at";

/// One decision as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecisionRow {
    /// The task decided.
    pub task_id: Uuid,
    /// Its listing.
    pub listing_id: String,
    /// The sampling round (negative for out-of-round tasks).
    pub round: i64,
    /// The stratum it was drawn from.
    pub stratum: String,
    /// The probability it was drawn with.
    pub inclusion_probability: f64,
    /// `genuine`, `counterfeit` or `uncertain`.
    #[schema(value_type = crate::aggregate::Outcome)]
    pub outcome: String,
    /// Votes per verdict.
    pub votes_genuine: i64,
    /// Votes per verdict.
    pub votes_counterfeit: i64,
    /// Votes per verdict.
    pub votes_unsure: i64,
    /// The posterior the decision was taken at (majority decisions have none).
    pub posterior: Option<f64>,
    /// `open`, `confirmed` or `dismissed` when it was escalated.
    #[schema(value_type = Option<crate::escalation::EscalationStatus>)]
    pub escalation_status: Option<String>,
    /// When it was decided.
    #[serde(with = "micros")]
    pub decided_at: DateTime<Utc>,
}

/// A row that can be written in either form.
pub trait ExportRow: Serialize {
    /// The row's CSV fields, in header order.
    fn fields(&self) -> Vec<String>;

    /// Appends the row, with its line end, to `out`.
    fn write(&self, format: ExportFormat, out: &mut Vec<u8>) {
        match format {
            ExportFormat::Csv => {
                let line = self
                    .fields()
                    .iter()
                    .map(|f| csv_field(f))
                    .collect::<Vec<_>>()
                    .join(",");
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut *out, self).expect("export rows serialise");
                out.push(b'\n');
            }
        }
    }
}

fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Instants as RFC 3339 with six fractional digits in both forms, so they sort
/// as text.
mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::time(at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

impl ExportRow for VoteRow {
    fn fields(&self) -> Vec<String> {
        vec![
            self.vote_id.to_string(),
            self.task_id.to_string(),
            self.task_kind.clone(),
            self.listing_id.clone(),
            self.volunteer.clone(),
            self.verdict.clone(),
            self.reasons.join(";"),
            opt(&self.note),
            opt(&self.seconds_taken),
            time(&self.created_at),
        ]
    }
}

impl ExportRow for DecisionRow {
    fn fields(&self) -> Vec<String> {
        vec![
            self.task_id.to_string(),
            self.listing_id.clone(),
            self.round.to_string(),
            self.stratum.clone(),
            self.inclusion_probability.to_string(),
            self.outcome.clone(),
            self.votes_genuine.to_string(),
            self.votes_counterfeit.to_string(),
            self.votes_unsure.to_string(),
            opt(&self.posterior),
            opt(&self.escalation_status),
            time(&self.decided_at),
        ]
    }
}

/// The header line of a CSV export (nothing for JSON lines).
pub fn header(kind: ExportKind, format: ExportFormat) -> Vec<u8> {
    match format {
        ExportFormat::Csv => format!("{}\r\n", kind.header()).into_bytes(),
        ExportFormat::Jsonl => Vec::new(),
    }
}

/// One CSV field: quoted when it holds a comma, quote or line break, and a
/// field a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or
/// carriage return first) prefixed with `'` (a volunteer's note is text).
pub fn csv_field(raw: &str) -> String {
    let formula = raw.starts_with(['=', '+', '-', '@', '\t', '\r']) && raw.parse::<f64>().is_err();
    let text = if formula {
        format!("'{raw}")
    } else {
        raw.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(note: Option<&str>) -> VoteRow {
        VoteRow {
            vote_id: Uuid::from_u128(1),
            task_id: Uuid::from_u128(2),
            task_kind: "review".into(),
            listing_id: "l-1".into(),
            volunteer: "p_00".into(),
            verdict: "counterfeit".into(),
            reasons: vec!["logo".into(), "price".into()],
            note: note.map(str::to_owned),
            seconds_taken: Some(12.5),
            created_at: DateTime::from_timestamp(1_800_000_000, 123_000).unwrap(),
        }
    }

    #[test]
    fn csv_rows_quote_what_needs_it_and_defuse_formulas() {
        let mut out = Vec::new();
        vote(Some("says \"fake\", clearly\nsee photo 2")).write(ExportFormat::Csv, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "00000000-0000-0000-0000-000000000001,00000000-0000-0000-0000-000000000002,review,l-1,p_00,\
             counterfeit,logo;price,\"says \"\"fake\"\", clearly\nsee photo 2\",12.5,2027-01-15T08:00:00.000123Z\r\n"
        );
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(
            csv_field("-12.5"),
            "-12.5",
            "a negative number stays a number"
        );
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(
            header(ExportKind::Votes, ExportFormat::Csv)
                .split(|b| *b == b',')
                .count(),
            vote(None).fields().len()
        );
    }

    #[test]
    fn json_lines_read_back_as_the_row() {
        let mut out = Vec::new();
        vote(None).write(ExportFormat::Jsonl, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let back: VoteRow = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, vote(None));
    }

    #[test]
    fn pseudonyms_are_stable_under_one_key_and_differ_between_keys() {
        let id = Uuid::from_u128(42);
        let a = Pseudonyms::new(b"deployment a");
        let b = Pseudonyms::new(b"deployment b");
        assert_eq!(a.of(id), Pseudonyms::new(b"deployment a").of(id));
        assert_ne!(a.of(id), b.of(id));
        assert_ne!(a.of(id), a.of(Uuid::from_u128(43)));
        assert!(a.of(id).starts_with("p_") && a.of(id).len() == 34);
        assert!(!a.of(id).contains(&id.simple().to_string()));
        assert_eq!(VolunteerIds::Raw.write(id), id.to_string());
    }
}
