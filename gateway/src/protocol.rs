//! The protocols Warden proxies, spelled once. The type is the policy contract's own (the WIT
//! `enum protocol`, generated in [`crate::policy`]), so config (`protocol = "postgres"`),
//! audit records, case files, logs and policies all use the same values; here it gets its
//! names and its serde form.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::policy::bindings_protocol::Protocol;

impl Protocol {
    /// Every protocol, in WIT order.
    pub const ALL: [Protocol; 3] = [Protocol::Postgres, Protocol::Ssh, Protocol::Http];

    /// The lower-case name used in config, audit records, case files and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Ssh => "ssh",
            Protocol::Http => "http",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &["postgres", "ssh", "http"]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Protocol;

    #[test]
    fn names_round_trip_as_lower_case() {
        for p in Protocol::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Protocol>(&json).unwrap(), p);
        }
        assert!(serde_json::from_str::<Protocol>("\"gopher\"").is_err());
    }
}
