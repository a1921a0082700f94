//! The sort key that orders the builds of one stack.
//!
//! A build's `sk` is compared as a string everywhere: DynamoDB returns a
//! repo's builds in sk order, and the state machine's lock keeps
//! `last_started_sk <= :sk` and `deployed_sk < :sk`. So the key spells out,
//! in an order that sorts correctly byte by byte:
//!
//! ```text
//! u20261123T100000123Zb42x3f9a1c2b
//! │└── upload time ──┘└┬┘└──┬───┘
//! │   (UTC, to the ms)  │    └ `x`, then a digest of the upload
//! │                     │      (same upload, same key)
//! │                     └ build number: its digit count as a letter
//! │                       (a = 1 digit, b = 2, …), then the digits
//! └ format marker: sorts after every KSUID key written before it
//! ```
//!
//! Upload time first, so a later upload is a newer build; the build number
//! breaks ties within one millisecond, so of two versions uploaded together
//! the higher number is the newer build. The digest only separates two
//! uploads of the same version in the same millisecond.
//!
//! Letters and digits only: the key is the last `-`-separated part of the
//! execution name `{repo}-{env}-{sk}` and part of the change set name
//! `deployer-{sk}` (CloudFormation allows letters, digits and `-`).
//!
//! Builds written before this format have a KSUID sk (27 base62 characters,
//! first character at most `a`). `u` sorts after all of them, so after an
//! upgrade every new build is newer than every old one, and a stack whose
//! `last_started_sk` is an old KSUID still takes new builds.

use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::OffsetDateTime;

/// First character of every sort key in this format.
pub const SK_MARKER: char = 'u';

/// Latest upload time a key can spell (9999-12-31T23:59:59.999Z).
const MAX_UNIX_MS: i64 = 253_402_300_799_999;

/// The sort key of a build uploaded at `uploaded_unix_ms` (Unix time in
/// milliseconds, UTC) with `build_number`; `origin` identifies the upload.
pub fn build_sk(uploaded_unix_ms: i64, build_number: u64, origin: &[u8]) -> String {
    let ms = uploaded_unix_ms.clamp(0, MAX_UNIX_MS);
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("a time between 1970 and 9999 is representable");
    let time = at
        .format(format_description!(
            "[year][month][day]T[hour][minute][second][subsecond digits:3]Z"
        ))
        .expect("formatting a UTC time between 1970 and 9999 cannot fail");
    let digest = Sha256::digest(origin);
    let digest: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{SK_MARKER}{time}{}x{digest}",
        sortable_number(build_number)
    )
}

/// Whether `sk` is a build sort key: this format, or a KSUID (27 letters and
/// digits) from before it. Neither holds anything but letters and digits.
pub fn is_build_sk(sk: &str) -> bool {
    let alphanumeric = !sk.is_empty() && sk.bytes().all(|b| b.is_ascii_alphanumeric());
    let ksuid = sk.len() == 27;
    let ours =
        sk.starts_with(SK_MARKER) && sk.len() >= NEW_SK_MIN_LEN && sk.len() <= NEW_SK_MAX_LEN;
    alphanumeric && (ksuid || ours)
}

/// Marker, time, number of 1 to 20 digits with its letter, `x`, digest.
const NEW_SK_MIN_LEN: usize = 1 + 19 + 2 + 1 + 8;
const NEW_SK_MAX_LEN: usize = 1 + 19 + 21 + 1 + 8;

/// `n` as text that sorts like the number: the digit count as a letter
/// (`a` for 1 digit … `t` for 20), then the digits.
fn sortable_number(n: u64) -> String {
    let digits = n.to_string();
    let count = b'a' + (digits.len() as u8 - 1);
    format!("{}{digits}", count as char)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_428_000_123; // 2026-11-23T10:00:00.123Z

    #[test]
    fn key_spells_time_number_and_digest() {
        let sk = build_sk(T, 42, b"upload");
        assert!(sk.starts_with("u20261123T100000123Zb42x"), "{sk}");
        assert_eq!(sk.len(), "u20261123T100000123Zb42x".len() + 8);
        assert!(is_build_sk(&sk), "{sk}");
        for number in [0, 7, u64::MAX] {
            assert!(is_build_sk(&build_sk(T, number, b"")));
        }
        assert!(
            is_build_sk("2KqFQ6jRk1aaaaaaaaaaaaaaaaa"),
            "a KSUID from before"
        );
        for not_a_key in ["", "short", "u2026-11-23", "2KqFQ6jRk1aaaaaaaaaaaaaaaa-"] {
            assert!(!is_build_sk(not_a_key), "{not_a_key}");
        }
    }

    #[test]
    fn same_upload_gives_same_key() {
        assert_eq!(build_sk(T, 7, b"a"), build_sk(T, 7, b"a"));
        assert_ne!(build_sk(T, 7, b"a"), build_sk(T, 7, b"b"));
    }

    #[test]
    fn a_later_millisecond_sorts_after_whatever_the_build_numbers() {
        assert!(build_sk(T + 1, 1, b"x") > build_sk(T, 999, b"y"));
        assert!(build_sk(T + 1000, 1, b"x") > build_sk(T, 2, b"y"));
    }

    #[test]
    fn within_one_millisecond_the_higher_build_number_sorts_after() {
        let pairs = [
            (1, 2),
            (9, 10),
            (99, 100),
            (41, 42),
            (1_000_000_000, 9_999_999_999_999_999_999),
            (0, u64::MAX - 1),
            (u64::MAX - 1, u64::MAX),
        ];
        for (older, newer) in pairs {
            // Digests chosen so the older one's is the greater: the number
            // must decide before the digest does.
            let older_sk = build_sk(T, older, b"zz");
            let newer_sk = build_sk(T, newer, b"aa");
            assert!(
                newer_sk > older_sk,
                "{newer_sk} should sort after {older_sk}"
            );
        }
    }

    #[test]
    fn every_new_key_sorts_after_every_ksuid() {
        // The greatest KSUID there can be, and one from 2024.
        for ksuid in ["aWgEPTl1tmebfsQzFP4bxwgy80V", "2fGpU5i8hK3nD8nQ1b1cM5vTrVq"] {
            assert!(build_sk(0, 0, b"").as_str() > ksuid);
        }
    }

    #[test]
    fn out_of_range_times_are_clamped_not_panics() {
        assert!(build_sk(-5, 1, b"").starts_with("u19700101T000000000Za1x"));
        assert!(build_sk(i64::MAX, 1, b"").starts_with("u99991231T235959999Za1x"));
    }
}
