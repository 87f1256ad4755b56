//! The life of a case against a seller, the penalty ladder and the seller's
//! risk tier from strikes: the rules the API and the coordinator's deadline
//! sweep both apply, with no I/O.
//!
//! A case opens `notified` (the seller was told and the refutation window
//! runs). A refutation in time makes it `refuted` (back to staff), who either
//! uphold it (`upheld`: closed, no penalty) or reject it (`rejected`); a window
//! that runs out makes it `expired`. A rejected or expired case is then
//! `enforced`: its penalties are issued, once.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// The seller was notified; the refutation window runs.
    Notified,
    /// The seller refuted in time; staff decide.
    Refuted,
    /// Staff accepted the refutation: closed without penalty.
    Upheld,
    /// Staff rejected the refutation: penalties follow.
    Rejected,
    /// The window ran out without a refutation: penalties follow.
    Expired,
    /// The penalties were issued.
    Enforced,
}

impl CaseState {
    /// Every state, in the order of a case's life.
    pub const ALL: [CaseState; 6] = [
        CaseState::Notified,
        CaseState::Refuted,
        CaseState::Upheld,
        CaseState::Rejected,
        CaseState::Expired,
        CaseState::Enforced,
    ];

    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Notified => "notified",
            CaseState::Refuted => "refuted",
            CaseState::Upheld => "upheld",
            CaseState::Rejected => "rejected",
            CaseState::Expired => "expired",
            CaseState::Enforced => "enforced",
        }
    }

    /// Whether the case still waits for someone (the seller, staff or the sweep).
    pub fn is_open(self) -> bool {
        !matches!(self, CaseState::Upheld | CaseState::Enforced)
    }
}

impl fmt::Display for CaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaseState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CaseState::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown case state {s:?}"))
    }
}

/// Something that happens to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseEvent {
    /// The seller submits a refutation at this time.
    Refute {
        /// When it arrived.
        at: DateTime<Utc>,
    },
    /// The deadline sweep looks at the case at this time.
    Sweep {
        /// The sweep's clock.
        now: DateTime<Utc>,
    },
    /// Staff decide the refutation.
    Decide {
        /// Uphold (no penalty) or reject (penalties).
        decision: RefutationDecision,
        /// Whether the deciding staff member is the one who opened the case.
        by_opener: bool,
    },
    /// The penalties were issued.
    Enforce,
}

/// Staff's answer to a refutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefutationDecision {
    /// The seller is right: close the case without penalty.
    Uphold,
    /// The refutation fails: penalties follow.
    Reject,
}

/// Why an event does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseRefusal {
    /// The window closed before the refutation arrived.
    WindowClosed,
    /// The seller already refuted this case.
    AlreadyRefuted,
    /// The staff member who opened the case may not decide its refutation.
    SameStaff,
    /// Nothing to do in this state (a repeat, or the wrong order).
    WrongState(CaseState),
}

/// The state an event moves a case with this `deadline` to from `current`.
pub fn apply(
    current: CaseState,
    deadline: DateTime<Utc>,
    event: CaseEvent,
) -> Result<CaseState, CaseRefusal> {
    use CaseState::*;
    match (current, event) {
        (Notified, CaseEvent::Refute { at }) if at < deadline => Ok(Refuted),
        (Notified | Expired | Enforced, CaseEvent::Refute { .. }) => Err(CaseRefusal::WindowClosed),
        (Refuted | Upheld | Rejected, CaseEvent::Refute { .. }) => Err(CaseRefusal::AlreadyRefuted),
        (Notified, CaseEvent::Sweep { now }) if now >= deadline => Ok(Expired),
        (
            Refuted,
            CaseEvent::Decide {
                by_opener: true, ..
            },
        ) => Err(CaseRefusal::SameStaff),
        (Refuted, CaseEvent::Decide { decision, .. }) => Ok(match decision {
            RefutationDecision::Uphold => Upheld,
            RefutationDecision::Reject => Rejected,
        }),
        (Rejected | Expired, CaseEvent::Enforce) => Ok(Enforced),
        (state, _) => Err(CaseRefusal::WrongState(state)),
    }
}

/// One kind of penalty (the enforcement event kinds, less `lifted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PenaltyKind {
    /// Take the listing down.
    DelistListing,
    /// Pay back the buyers.
    ReimburseBuyers,
    /// The seller may not add listings until a time.
    LimitNewListings,
    /// Name the seller publicly.
    PublicNotice,
    /// Close the storefront.
    CloseStorefront,
    /// Keep the consumer-protection deposit.
    ConfiscateDeposit,
    /// Never again a storefront.
    PermanentBan,
}

impl PenaltyKind {
    /// Every kind.
    pub const ALL: [PenaltyKind; 7] = [
        PenaltyKind::DelistListing,
        PenaltyKind::ReimburseBuyers,
        PenaltyKind::LimitNewListings,
        PenaltyKind::PublicNotice,
        PenaltyKind::CloseStorefront,
        PenaltyKind::ConfiscateDeposit,
        PenaltyKind::PermanentBan,
    ];

    /// The kind as stored, and in the routing key `enforcement.<kind>`.
    pub fn as_str(self) -> &'static str {
        match self {
            PenaltyKind::DelistListing => "delist_listing",
            PenaltyKind::ReimburseBuyers => "reimburse_buyers",
            PenaltyKind::LimitNewListings => "limit_new_listings",
            PenaltyKind::PublicNotice => "public_notice",
            PenaltyKind::CloseStorefront => "close_storefront",
            PenaltyKind::ConfiscateDeposit => "confiscate_deposit",
            PenaltyKind::PermanentBan => "permanent_ban",
        }
    }

    /// Whether the penalty lasts a number of days (the others are done once).
    pub fn is_timed(self) -> bool {
        matches!(
            self,
            PenaltyKind::LimitNewListings | PenaltyKind::PublicNotice
        )
    }
}

impl FromStr for PenaltyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PenaltyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown penalty kind {s:?}"))
    }
}

/// One penalty of a ladder step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PenaltySpec {
    /// What.
    pub kind: PenaltyKind,
    /// For how long, for a timed kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
}

/// The penalties of the n-th strike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LadderStep {
    /// Which strike (1, 2, 3, ...); the last step also applies to every later strike.
    pub strike: u32,
    /// What it brings.
    pub penalties: Vec<PenaltySpec>,
}

/// The penalty ladder staff configure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    /// Strikes within this many days count together to pick the step.
    pub strike_window_days: u32,
    /// A strike no longer counts at all after this many days.
    pub strikes_expire_days: u32,
    /// The steps, strike 1 first.
    pub steps: Vec<LadderStep>,
}

impl Default for Ladder {
    /// The program's published ladder: delist and reimburse on every strike,
    /// a listing limit and a public notice on the second, the storefront,
    /// the deposit and a permanent ban on the third.
    fn default() -> Self {
        use PenaltyKind::*;
        let p = |kind, days| PenaltySpec { kind, days };
        Ladder {
            strike_window_days: 365,
            strikes_expire_days: 730,
            steps: vec![
                LadderStep {
                    strike: 1,
                    penalties: vec![
                        p(DelistListing, None),
                        p(ReimburseBuyers, None),
                        p(LimitNewListings, Some(7)),
                    ],
                },
                LadderStep {
                    strike: 2,
                    penalties: vec![
                        p(DelistListing, None),
                        p(ReimburseBuyers, None),
                        p(LimitNewListings, Some(30)),
                        p(PublicNotice, Some(90)),
                    ],
                },
                LadderStep {
                    strike: 3,
                    penalties: vec![
                        p(DelistListing, None),
                        p(ReimburseBuyers, None),
                        p(PublicNotice, Some(365)),
                        p(CloseStorefront, None),
                        p(ConfiscateDeposit, None),
                        p(PermanentBan, None),
                    ],
                },
            ],
        }
    }
}

/// Longest time-limited penalty a ladder may set.
pub const MAX_PENALTY_DAYS: u32 = 3650;

impl Ladder {
    /// Checks the ladder; the message names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_PENALTY_DAYS).contains(&self.strike_window_days) {
            return Err(format!(
                "strike_window_days must be between 1 and {MAX_PENALTY_DAYS}"
            ));
        }
        if self.strikes_expire_days < self.strike_window_days
            || self.strikes_expire_days > MAX_PENALTY_DAYS
        {
            return Err(format!(
                "strikes_expire_days must be between strike_window_days and {MAX_PENALTY_DAYS}"
            ));
        }
        if self.steps.is_empty() || self.steps.len() > 10 {
            return Err("steps must hold 1 to 10 steps".into());
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.strike as usize != i + 1 {
                return Err(format!(
                    "steps[{i}].strike must be {}: steps are strikes 1, 2, 3, ... in order",
                    i + 1
                ));
            }
            if step.penalties.is_empty() {
                return Err(format!("steps[{i}].penalties must not be empty"));
            }
            let mut seen = Vec::new();
            for (j, p) in step.penalties.iter().enumerate() {
                let at = format!("steps[{i}].penalties[{j}]");
                if seen.contains(&p.kind) {
                    return Err(format!("{at}.kind {} appears twice", p.kind.as_str()));
                }
                seen.push(p.kind);
                match (p.kind.is_timed(), p.days) {
                    (true, Some(d)) if (1..=MAX_PENALTY_DAYS).contains(&d) => {}
                    (true, _) => {
                        return Err(format!(
                            "{at}.days must be between 1 and {MAX_PENALTY_DAYS} for {}",
                            p.kind.as_str()
                        ));
                    }
                    (false, Some(_)) => {
                        return Err(format!(
                            "{at}.days is only for limit_new_listings and public_notice"
                        ));
                    }
                    (false, None) => {}
                }
            }
        }
        Ok(())
    }

    /// The step for a seller's n-th strike within the window (1-based); past the
    /// last step, the last one.
    pub fn step(&self, strike: u32) -> &LadderStep {
        let i = (strike.max(1) as usize - 1).min(self.steps.len() - 1);
        &self.steps[i]
    }

    /// Which strike a new one would be: one more than the seller's strikes
    /// within the window before `now`.
    pub fn next_strike(&self, strikes: &[DateTime<Utc>], now: DateTime<Utc>) -> u32 {
        let since = now - Duration::days(i64::from(self.strike_window_days));
        strikes
            .iter()
            .filter(|&&at| at > since && at <= now)
            .count() as u32
            + 1
    }

    /// The penalties a strike issues at `now`, each with its end for a timed one.
    pub fn penalties(
        &self,
        strike: u32,
        now: DateTime<Utc>,
    ) -> Vec<(PenaltyKind, Option<DateTime<Utc>>)> {
        self.step(strike)
            .penalties
            .iter()
            .map(|p| {
                let until = p.days.map(|d| now + Duration::days(i64::from(d)));
                (p.kind, until)
            })
            .collect()
    }
}

/// The risk tier a seller's live strikes give: `standard` with none, `high`
/// with one, `critical` with two or more. The sampler's rules name tiers, so
/// a seller with strikes is inspected at the higher tiers' rates.
pub fn derived_tier(live_strikes: usize) -> &'static str {
    match live_strikes {
        0 => crate::listing::DEFAULT_RISK_TIER,
        1 => "high",
        _ => "critical",
    }
}

/// Longest refutation text, in characters.
pub const MAX_REFUTATION_CHARS: usize = 8000;
/// Most evidence links on a refutation, complaint or test purchase.
pub const MAX_EVIDENCE_URLS: usize = 20;
/// Longest evidence link.
pub const MAX_URL_CHARS: usize = 2048;

/// Checks free text: not blank, at most `max` characters, no control
/// characters other than line breaks and tabs.
pub fn check_text(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if text.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!("{field} must not hold control characters"));
    }
    Ok(())
}

/// Checks evidence links: at most [`MAX_EVIDENCE_URLS`], each an absolute
/// `https` (or `http`) URL with a host, without spaces or credentials.
pub fn check_evidence_urls(urls: &[String]) -> Result<(), String> {
    if urls.len() > MAX_EVIDENCE_URLS {
        return Err(format!(
            "evidence_urls must hold at most {MAX_EVIDENCE_URLS} links"
        ));
    }
    for (i, url) in urls.iter().enumerate() {
        let bad = || format!("evidence_urls[{i}] must be an http or https link");
        if url.len() > MAX_URL_CHARS {
            return Err(format!(
                "evidence_urls[{i}] must be at most {MAX_URL_CHARS} characters"
            ));
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty()
            || host.contains('@')
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaseState::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_refutation_in_time_goes_to_staff_and_a_late_one_is_refused() {
        let deadline = t(100);
        assert_eq!(
            apply(Notified, deadline, CaseEvent::Refute { at: t(99) }),
            Ok(Refuted)
        );
        assert_eq!(
            apply(Notified, deadline, CaseEvent::Refute { at: t(100) }),
            Err(CaseRefusal::WindowClosed)
        );
        assert_eq!(
            apply(Expired, deadline, CaseEvent::Refute { at: t(50) }),
            Err(CaseRefusal::WindowClosed)
        );
        assert_eq!(
            apply(Refuted, deadline, CaseEvent::Refute { at: t(50) }),
            Err(CaseRefusal::AlreadyRefuted)
        );
    }

    #[test]
    fn the_sweep_expires_only_notified_cases_past_their_deadline() {
        let deadline = t(100);
        assert_eq!(
            apply(Notified, deadline, CaseEvent::Sweep { now: t(100) }),
            Ok(Expired)
        );
        assert_eq!(
            apply(Notified, deadline, CaseEvent::Sweep { now: t(99) }),
            Err(CaseRefusal::WrongState(Notified))
        );
        // A refutation stops the clock.
        assert_eq!(
            apply(Refuted, deadline, CaseEvent::Sweep { now: t(1000) }),
            Err(CaseRefusal::WrongState(Refuted))
        );
    }

    #[test]
    fn the_opener_cannot_decide_the_refutation_and_decisions_lead_where_they_say() {
        let d = t(100);
        let decide = |decision, by_opener| CaseEvent::Decide {
            decision,
            by_opener,
        };
        assert_eq!(
            apply(Refuted, d, decide(RefutationDecision::Uphold, true)),
            Err(CaseRefusal::SameStaff)
        );
        assert_eq!(
            apply(Refuted, d, decide(RefutationDecision::Uphold, false)),
            Ok(Upheld)
        );
        assert_eq!(
            apply(Refuted, d, decide(RefutationDecision::Reject, false)),
            Ok(Rejected)
        );
        assert_eq!(
            apply(Notified, d, decide(RefutationDecision::Reject, false)),
            Err(CaseRefusal::WrongState(Notified))
        );
        assert_eq!(apply(Rejected, d, CaseEvent::Enforce), Ok(Enforced));
        assert_eq!(apply(Expired, d, CaseEvent::Enforce), Ok(Enforced));
        assert_eq!(
            apply(Upheld, d, CaseEvent::Enforce),
            Err(CaseRefusal::WrongState(Upheld))
        );
        assert_eq!(
            apply(Enforced, d, CaseEvent::Enforce),
            Err(CaseRefusal::WrongState(Enforced))
        );
    }

    #[test]
    fn states_and_kinds_read_back_from_their_names() {
        for s in CaseState::ALL {
            assert_eq!(s.as_str().parse::<CaseState>(), Ok(s));
        }
        for k in PenaltyKind::ALL {
            assert_eq!(k.as_str().parse::<PenaltyKind>(), Ok(k));
        }
        assert!("lifted".parse::<PenaltyKind>().is_err());
    }

    #[test]
    fn strikes_within_the_window_pick_the_step_and_older_ones_do_not() {
        let ladder = Ladder::default();
        ladder.validate().unwrap();
        let now = t(0);
        let day = |d: i64| now - Duration::days(d);
        assert_eq!(ladder.next_strike(&[], now), 1);
        assert_eq!(ladder.next_strike(&[day(10)], now), 2);
        assert_eq!(ladder.next_strike(&[day(10), day(400)], now), 2);
        assert_eq!(ladder.next_strike(&[day(10), day(20), day(30)], now), 4);
        // Past the last step, the last step.
        assert_eq!(ladder.step(4).strike, 3);
        let kinds = |s| {
            ladder
                .penalties(s, now)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert!(!kinds(1).contains(&PenaltyKind::PermanentBan));
        assert!(kinds(3).contains(&PenaltyKind::PermanentBan));
        let limit = ladder
            .penalties(2, now)
            .into_iter()
            .find(|(k, _)| *k == PenaltyKind::LimitNewListings)
            .unwrap();
        assert_eq!(limit.1, Some(now + Duration::days(30)));
    }

    #[test]
    fn a_bad_ladder_is_refused_naming_its_field() {
        let mut l = Ladder::default();
        l.steps[1].strike = 3;
        assert!(l.validate().unwrap_err().contains("steps[1].strike"));
        let mut l = Ladder::default();
        l.steps[0].penalties[2].days = None;
        assert!(
            l.validate()
                .unwrap_err()
                .contains("steps[0].penalties[2].days")
        );
        let mut l = Ladder::default();
        l.steps[0].penalties[0].days = Some(3);
        assert!(l.validate().unwrap_err().contains("only for"));
        let l = Ladder {
            strikes_expire_days: 10,
            ..Ladder::default()
        };
        assert!(l.validate().unwrap_err().contains("strikes_expire_days"));
        let mut l = Ladder::default();
        l.steps[2].penalties.push(PenaltySpec {
            kind: PenaltyKind::PermanentBan,
            days: None,
        });
        assert!(l.validate().unwrap_err().contains("twice"));
        let json = r#"{"strike_window_days":1,"strikes_expire_days":1,"steps":[{"strike":1,"penalties":[{"kind":"jail"}]}]}"#;
        assert!(serde_json::from_str::<Ladder>(json).is_err());
    }

    #[test]
    fn tiers_rise_with_live_strikes() {
        assert_eq!(derived_tier(0), "standard");
        assert_eq!(derived_tier(1), "high");
        assert_eq!(derived_tier(5), "critical");
    }

    #[test]
    fn evidence_links_and_texts_are_checked() {
        assert!(check_evidence_urls(&["https://example.com/a.jpg".into()]).is_ok());
        for bad in [
            "javascript:alert(1)",
            "https://",
            "https://user:pw@example.com/",
            "ftp://example.com",
            "https://exa mple.com",
        ] {
            assert!(check_evidence_urls(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(check_evidence_urls(&vec!["https://e.com".to_string(); 21]).is_err());
        assert!(check_text("text", "  ", 10).is_err());
        assert!(check_text("text", "abc\u{0}", 10).is_err());
        assert!(check_text("text", &"x".repeat(11), 10).is_err());
        assert!(check_text("text", "line one\nline two", 100).is_ok());
    }
}
