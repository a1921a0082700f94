//! One timestamp format everywhere: RFC 3339, UTC, to the second
//! (`2026-12-01T08:15:03Z`), as the ledger shows times; and the one clock
//! every record writer stamps its records with ([`now_rfc3339`]).

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// A point in time, shown as RFC 3339 UTC.
pub type Timestamp = OffsetDateTime;

/// `at` as `2026-12-01T08:15:03Z`.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("a UTC time between years 1 and 9999 formats")
}

/// RFC 3339 timestamp of "now", UTC at full precision
/// (`2026-12-01T08:15:03.237171456Z`): the form every timestamp attribute
/// of the builds and site deployments tables is written in (Step Functions
/// writes `$$.State.EnteredTime` in RFC 3339 too). [`rfc3339`] shows it to
/// the second.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("formatting the current UTC time as RFC 3339 cannot fail")
}

/// Reads any RFC 3339 time (any precision, any offset), as every writer of
/// the ledger's records writes them.
pub fn parse_time(at: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(at, &Rfc3339).ok()
}

/// serde for [`Timestamp`] fields: [`rfc3339`].
pub mod serde_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_time(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not RFC 3339")))
    }

    pub mod option {
        use serde::Serializer;
        use time::OffsetDateTime;

        pub fn serialize<S: Serializer>(
            at: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => s.serialize_str(&super::super::rfc3339(*at)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_writer_s_form_reads_and_prints_as_one() {
        for at in [
            "2026-11-23T03:55:07.237Z",
            "2026-11-23T03:55:07.237171+00:00",
            "2026-11-23T03:55:07.237171456Z",
            "2026-11-23T04:55:07+01:00",
        ] {
            assert_eq!(rfc3339(parse_time(at).unwrap()), "2026-11-23T03:55:07Z");
        }
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn now_is_written_in_utc_and_reads_back() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z'), "{now}");
        let read = parse_time(&now).unwrap();
        assert_eq!(read.offset(), UtcOffset::UTC);
        assert!((OffsetDateTime::now_utc() - read).whole_seconds() < 5);
    }
}
