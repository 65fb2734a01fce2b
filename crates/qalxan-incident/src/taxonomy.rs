//! The Reference Security Incident Taxonomy (RSIT), as maintained by the TF-CSIRT/ENISA
//! working group: the classes CSIRTs report incidents under and the types within each.
//!
//! Incidents are stored as `class/type` (`fraud/phishing`), the machine-readable form the
//! taxonomy publishes, so exports to other CSIRTs need no mapping.

use serde::Serialize;

/// One class and its types: (type, description).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Class {
    pub id: &'static str,
    pub label: &'static str,
    pub types: &'static [(&'static str, &'static str)],
}

/// The taxonomy, in its published order.
pub const CLASSES: &[Class] = &[
    Class {
        id: "abusive-content",
        label: "Abusive content",
        types: &[
            ("spam", "Unsolicited bulk e-mail"),
            (
                "harmful-speech",
                "Discreditation or discrimination of somebody",
            ),
            (
                "violence",
                "Child sexual exploitation, sexual content, glorification of violence",
            ),
        ],
    },
    Class {
        id: "malicious-code",
        label: "Malicious code",
        types: &[
            ("infected-system", "A system infected with malware"),
            (
                "c2-server",
                "Command-and-control server of a botnet or malware",
            ),
            (
                "malware-distribution",
                "URI or system used to distribute malware",
            ),
            (
                "malware-configuration",
                "URI hosting a malware configuration file",
            ),
        ],
    },
    Class {
        id: "information-gathering",
        label: "Information gathering",
        types: &[
            (
                "scanner",
                "Attacks that send requests to a system to discover weaknesses",
            ),
            (
                "sniffing",
                "Observing and recording network traffic (wiretapping)",
            ),
            (
                "social-engineering",
                "Gathering information from people without technical means",
            ),
        ],
    },
    Class {
        id: "intrusion-attempts",
        label: "Intrusion attempts",
        types: &[
            ("ids-alert", "Connection attempt flagged by an IDS or WAF"),
            (
                "brute-force",
                "Multiple login attempts (guessing, cracking, credential stuffing)",
            ),
            (
                "exploit",
                "An attempt to compromise a system by exploiting a known vulnerability",
            ),
        ],
    },
    Class {
        id: "intrusions",
        label: "Intrusions",
        types: &[
            (
                "privileged-account-compromise",
                "Compromise of a privileged account",
            ),
            (
                "unprivileged-account-compromise",
                "Compromise of an unprivileged account",
            ),
            (
                "application-compromise",
                "Compromise of an application by exploiting a vulnerability",
            ),
            (
                "system-compromise",
                "Compromise of a system, e.g. by a rootkit or backdoor",
            ),
            ("burglary", "Physical intrusion"),
        ],
    },
    Class {
        id: "availability",
        label: "Availability",
        types: &[
            ("dos", "Denial of service"),
            ("ddos", "Distributed denial of service"),
            (
                "misconfiguration",
                "Software misconfiguration resulting in service unavailability",
            ),
            ("sabotage", "Physical sabotage"),
            ("outage", "Outage not caused by malicious intent"),
        ],
    },
    Class {
        id: "information-content-security",
        label: "Information content security",
        types: &[
            (
                "unauthorised-information-access",
                "Unauthorised access to information",
            ),
            (
                "unauthorised-information-modification",
                "Unauthorised modification of information",
            ),
            (
                "data-loss",
                "Loss of data, e.g. by a hard-disk failure or physical theft",
            ),
            ("data-leak", "Leaked confidential information"),
        ],
    },
    Class {
        id: "fraud",
        label: "Fraud",
        types: &[
            (
                "unauthorised-use-of-resources",
                "Using resources for unauthorised purposes",
            ),
            (
                "copyright",
                "Offering or installing copies of unlicensed software or content",
            ),
            ("masquerade", "Spoofing an entity to benefit from it"),
            (
                "phishing",
                "Masquerading as another entity to persuade users to reveal credentials",
            ),
        ],
    },
    Class {
        id: "vulnerable",
        label: "Vulnerable",
        types: &[
            (
                "weak-crypto",
                "Publicly accessible services offering weak cryptography",
            ),
            (
                "ddos-amplifier",
                "Publicly accessible services usable for reflection or amplification",
            ),
            (
                "potentially-unwanted-accessible",
                "Potentially unwanted publicly accessible services",
            ),
            (
                "information-disclosure",
                "Publicly accessible services disclosing sensitive information",
            ),
            (
                "vulnerable-system",
                "A system vulnerable to certain attacks",
            ),
        ],
    },
    Class {
        id: "other",
        label: "Other",
        types: &[
            (
                "other",
                "All incidents which do not fit in one of the given categories",
            ),
            (
                "undetermined",
                "The categorisation of the incident is unknown or undetermined",
            ),
        ],
    },
    Class {
        id: "test",
        label: "Test",
        types: &[("test", "Meant for testing")],
    },
];

/// A checked `class/type` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Category {
    pub class: &'static Class,
    pub type_index: usize,
}

/// Why a category did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CategoryError {
    #[error("unknown RSIT class '{0}' (expected one of: {1})")]
    Class(String, String),
    #[error("'{0}' is not a type of RSIT class {1} (expected one of: {2})")]
    Type(String, &'static str, String),
}

impl PartialEq for Class {
    fn eq(&self, other: &Class) -> bool {
        self.id == other.id
    }
}
impl Eq for Class {}
impl std::hash::Hash for Class {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.id.hash(h)
    }
}

impl Category {
    /// Parses `class/type`, or a bare class (its first type). Case and surrounding spaces are
    /// ignored; RSIT's older spelling with spaces (`Malicious Code`) is accepted.
    pub fn parse(text: &str) -> Result<Category, CategoryError> {
        let norm = text.trim().to_ascii_lowercase().replace([' ', '_'], "-");
        let (class_id, type_id) = match norm.split_once('/') {
            Some((c, t)) => (
                c.trim_matches('-').to_owned(),
                Some(t.trim_matches('-').to_owned()),
            ),
            None => (norm.clone(), None),
        };
        let class = CLASSES.iter().find(|c| c.id == class_id).ok_or_else(|| {
            CategoryError::Class(
                text.trim().to_owned(),
                CLASSES.iter().map(|c| c.id).collect::<Vec<_>>().join(", "),
            )
        })?;
        let type_index = match type_id {
            None => 0,
            Some(t) => class
                .types
                .iter()
                .position(|(id, _)| *id == t)
                .ok_or_else(|| {
                    CategoryError::Type(
                        t.clone(),
                        class.id,
                        class
                            .types
                            .iter()
                            .map(|(id, _)| *id)
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })?,
        };
        Ok(Category { class, type_index })
    }

    pub fn type_id(&self) -> &'static str {
        self.class.types[self.type_index].0
    }

    pub fn description(&self) -> &'static str {
        self.class.types[self.type_index].1
    }

    /// `Class label / type`, for people.
    pub fn label(&self) -> String {
        format!("{} / {}", self.class.label, self.type_id())
    }

    /// Every category, in the taxonomy's order (for forms).
    pub fn all() -> impl Iterator<Item = Category> {
        CLASSES.iter().flat_map(|class| {
            (0..class.types.len()).map(move |type_index| Category { class, type_index })
        })
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.class.id, self.type_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_published_spellings() {
        assert_eq!(
            Category::parse("fraud/phishing").map(|c| c.to_string()),
            Ok("fraud/phishing".into())
        );
        assert_eq!(
            Category::parse(" Malicious Code / C2 Server ").map(|c| c.to_string()),
            Ok("malicious-code/c2-server".into())
        );
        assert_eq!(
            Category::parse("availability").map(|c| c.to_string()),
            Ok("availability/dos".into())
        );
        assert!(matches!(
            Category::parse("fraud/ddos"),
            Err(CategoryError::Type(..))
        ));
        assert!(matches!(
            Category::parse("nonsense"),
            Err(CategoryError::Class(..))
        ));
    }

    #[test]
    fn every_category_round_trips() {
        let all: Vec<Category> = Category::all().collect();
        assert_eq!(all.len(), 39);
        for c in all {
            assert_eq!(Category::parse(&c.to_string()), Ok(c));
        }
    }
}
