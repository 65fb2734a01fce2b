//! Shared vocabulary of the Qalxan platform.
//!
//! Every other crate speaks in these types: who is acting ([`Role`]), how bad something is
//! ([`Severity`]), how far it may be shared ([`Tlp`]), whose it is ([`InstitutionId`]) and what
//! happened ([`EventKind`], [`Period`]). This crate does no I/O and knows nothing of HTTP or SQL.

mod event;
pub mod hex;
mod institution;
mod time_util;

pub use event::{bucket, EventKind, Period, DAY_MS, HOUR_MS};
pub use institution::{
    normalize_domain, parse_ip_range, FieldError, Institution, InstitutionFields,
};
pub use time_util::{format_rfc3339, now_millis, parse_rfc3339, Timestamp};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A value that did not parse as one of a closed set of names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' (expected one of: {expected})")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

/// Declares a closed, string-named enum with `FromStr`, `Display`, serde and OpenAPI support,
/// so the database, the API and the CLI all spell its values the same way.
#[macro_export]
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $crate::__private::utoipa::PartialSchema for $name {
            fn schema() -> $crate::__private::utoipa::openapi::RefOr<$crate::__private::utoipa::openapi::schema::Schema> {
                $crate::__private::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type($crate::__private::utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl $crate::__private::utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownName;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::UnknownName {
                        what: $what,
                        value: s.to_owned(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as $crate::__private::serde::Deserialize>::deserialize(d)?;
                <$name as ::std::str::FromStr>::from_str(&s).map_err($crate::__private::serde::de::Error::custom)
            }
        }
    };
}
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use utoipa;
}

named_enum!(
    /// What an account or API token may do. Checked by the server on every request.
    Role, "role", {
        /// Runs the platform: accounts, tokens, the audit trail, everything else.
        Admin => "admin",
        /// CERT staff: works on every institution's data.
        Analyst => "analyst",
        /// Staff of one protected institution: sees only that institution's data.
        Institution => "institution",
        /// Bug-bounty reporter: sees only their own reports.
        Researcher => "researcher",
        /// Reads everything, changes nothing.
        Auditor => "auditor",
        /// A machine (gateway, scanner, agent) that reports events; API tokens only.
        Sensor => "sensor",
    }
);

impl Role {
    /// CERT-side roles that see every institution's data.
    pub fn sees_all_institutions(self) -> bool {
        matches!(self, Role::Admin | Role::Analyst | Role::Auditor)
    }

    /// Roles a person can log in with; `sensor` exists only for API tokens.
    pub fn can_log_in(self) -> bool {
        !matches!(self, Role::Sensor)
    }

    /// Whether this role is tied to exactly one institution.
    pub fn requires_institution(self) -> bool {
        matches!(self, Role::Institution)
    }
}

named_enum!(
    /// How serious something is; ordered from least to most.
    Severity, "severity", {
        Info => "info",
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
);

named_enum!(
    /// Traffic Light Protocol 2.0 marking: how far information may be shared.
    Tlp, "TLP", {
        Clear => "TLP:CLEAR",
        Green => "TLP:GREEN",
        Amber => "TLP:AMBER",
        AmberStrict => "TLP:AMBER+STRICT",
        Red => "TLP:RED",
    }
);

impl Tlp {
    /// Parses the forms people write: `TLP:AMBER+STRICT`, `amber+strict`, `tlp:clear`, and TLP 1.0's
    /// `WHITE` (which TLP 2.0 renamed to CLEAR).
    pub fn parse_lenient(s: &str) -> Result<Tlp, UnknownName> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("TLP:").unwrap_or(&upper);
        let canonical = match bare {
            "WHITE" => "CLEAR",
            other => other,
        };
        format!("TLP:{canonical}").parse()
    }
}

/// Identifies one institution of the constituency.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct InstitutionId(pub i64);

impl fmt::Display for InstitutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for InstitutionId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(InstitutionId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(*role));
        }
        let err = "root".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role 'root' (expected one of: admin, analyst, institution, researcher, auditor, sensor)"
        );
    }

    #[test]
    fn severity_orders_by_seriousness() {
        assert!(Severity::Info < Severity::Low);
        assert!(Severity::High < Severity::Critical);
    }

    #[test]
    fn tlp_lenient_forms() {
        assert_eq!(Tlp::parse_lenient("amber+strict"), Ok(Tlp::AmberStrict));
        assert_eq!(Tlp::parse_lenient("TLP:WHITE"), Ok(Tlp::Clear));
        assert_eq!(Tlp::parse_lenient(" tlp:red "), Ok(Tlp::Red));
        assert!(Tlp::parse_lenient("purple").is_err());
    }

    #[test]
    fn serde_uses_the_names() {
        let json = serde_json::to_string(&(Role::Analyst, Tlp::AmberStrict)).unwrap();
        assert_eq!(json, r#"["analyst","TLP:AMBER+STRICT"]"#);
        let err = serde_json::from_str::<Role>(r#""boss""#).unwrap_err();
        assert!(err.to_string().contains("unknown role 'boss'"), "{err}");
    }
}
