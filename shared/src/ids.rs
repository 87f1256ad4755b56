//! Identifier newtypes and the small enums (roles, statuses) shared by every part.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A review task: one listing in one surveillance round.
    TaskId
);
uuid_id!(
    /// A user account (volunteer, staff or admin).
    UserId
);
uuid_id!(
    /// An escalation of a suspected counterfeit to staff.
    EscalationId
);

/// The marketplace's listing id: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ListingId(String);

/// Why a string is not a valid listing id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("listing_id must be 1 to 128 characters of letters, digits, '_', '.', ':' or '-'")]
pub struct InvalidListingId;

impl ListingId {
    /// Parses a listing id, refusing empty, over-long or oddly-charactered ones.
    pub fn parse(s: &str) -> Result<Self, InvalidListingId> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidListingId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ListingId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ListingId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ListingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a user may do. Higher roles include the lower ones' staff powers, not
/// the volunteer's: only volunteers claim and vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reviews listings.
    Volunteer,
    /// Decides escalations, sets sampling rules, manages volunteers.
    Staff,
    /// Everything staff can, plus creating staff and admins.
    Admin,
    /// A marketplace seller: sees and answers the cases against its seller id.
    Seller,
    /// A brand owner: files complaints about the brands it is linked to.
    BrandOwner,
}

impl Role {
    /// The role's name as stored and as written in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Volunteer => "volunteer",
            Role::Staff => "staff",
            Role::Admin => "admin",
            Role::Seller => "seller",
            Role::BrandOwner => "brand_owner",
        }
    }

    /// Whether this role may use staff routes.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Staff | Role::Admin)
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "volunteer" => Ok(Role::Volunteer),
            "staff" => Ok(Role::Staff),
            "admin" => Ok(Role::Admin),
            "seller" => Ok(Role::Seller),
            "brand_owner" => Ok(Role::BrandOwner),
            other => Err(format!(
                "unknown role {other:?}: use volunteer, staff, admin, seller or brand_owner"
            )),
        }
    }
}

/// Reads the stored name (for columns decoded with `#[sqlx(try_from = "String")]`).
impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Whether an account may sign in and act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Normal.
    Active,
    /// Locked out by staff; tokens stop working at once.
    Suspended,
}

impl UserStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
        }
    }
}

impl FromStr for UserStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(UserStatus::Active),
            "suspended" => Ok(UserStatus::Suspended),
            other => Err(format!("unknown status {other:?}")),
        }
    }
}

/// Reads the stored name (for columns decoded with `#[sqlx(try_from = "String")]`).
impl TryFrom<String> for UserStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_ids_are_checked_for_length_and_characters() {
        assert!(ListingId::parse("L-000123").is_ok());
        assert!(ListingId::parse("").is_err());
        assert!(ListingId::parse(&"x".repeat(129)).is_err());
        assert!(ListingId::parse("a b").is_err());
        assert!(ListingId::parse("a'; drop table").is_err());
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::Volunteer, Role::Staff, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
