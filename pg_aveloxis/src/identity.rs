//! Deterministic contributor ids: `aveloxis.platform_uuid(platform, user_id)`.
//!
//! Two layouts share the 16 bytes, told apart by the high nibble of byte 6 (the UUID
//! "version" nibble):
//!
//! * **Augur layout**, `0 < user_id < 2^32`: byte 0 = platform, bytes 1–4 = user id
//!   big-endian, every other byte 0 (version nibble 0). Byte-compatible with Augur's
//!   `GithubUUID`, so `cntrb_id`s join across Augur and Aveloxis databases.
//! * **Extended layout**, `user_id >= 2^32`: byte 0 = platform, bytes 1–5 = the low
//!   40 bits of the id big-endian, byte 6 = `0x80` (version nibble 8, RFC 9562's
//!   "custom" version), bytes 7–9 = the high 24 bits of the id big-endian, the rest 0.
//!
//! Why this cannot collide (the Go system's 8-byte layout maps 2^32 onto 1):
//! * Augur-layout UUIDs have byte 6 = 0, extended ones byte 6 = 0x80: disjoint sets.
//! * Within each layout the id is stored whole (32 bits, or 40 + 24 = 64 bits), so
//!   each layout is injective; byte 0 separates platforms.
//! * Random v4 ids (email-only contributors) have version nibble 4: disjoint from both.
//! * 8Knot keys contributors by `left(cntrb_id::text, 15)` = bytes 0–5 and the version
//!   nibble. That prefix holds the whole id for every id below 2^40 in both layouts,
//!   so 8Knot's truncated keys stay unique too (GitHub ids are near 2^28 today).

/// The largest platform id a UUID can carry (one byte).
pub const MAX_PLATFORM: i16 = 255;
/// Byte 6 of an extended-layout UUID: version nibble 8.
pub const EXTENDED_LAYOUT_MARKER: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformUuidError {
    PlatformOutOfRange(i16),
    UserIdNotPositive(i64),
}

impl std::fmt::Display for PlatformUuidError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PlatformOutOfRange(p) => write!(
                f,
                "platform {p} is outside 1..{MAX_PLATFORM}: use 1 (GitHub), 2 (GitLab) or 3 (plain git)"
            ),
            Self::UserIdNotPositive(id) => write!(
                f,
                "user id {id} is not positive: deterministic contributor ids need the forge's user id (> 0); \
                 contributors without one get a random id"
            ),
        }
    }
}

impl std::error::Error for PlatformUuidError {}

/// The 16 bytes of the deterministic contributor id for `(platform, user_id)`.
pub fn platform_uuid_bytes(platform: i16, user_id: i64) -> Result<[u8; 16], PlatformUuidError> {
    if !(1..=MAX_PLATFORM).contains(&platform) {
        return Err(PlatformUuidError::PlatformOutOfRange(platform));
    }
    if user_id <= 0 {
        return Err(PlatformUuidError::UserIdNotPositive(user_id));
    }
    let id = user_id as u64;
    let mut b = [0u8; 16];
    b[0] = platform as u8;
    if id < 1 << 32 {
        b[1..5].copy_from_slice(&(id as u32).to_be_bytes());
    } else {
        let be = id.to_be_bytes(); // be[0..3] = bits 63..40, be[3..8] = bits 39..0
        b[1..6].copy_from_slice(&be[3..8]);
        b[6] = EXTENDED_LAYOUT_MARKER;
        b[7..10].copy_from_slice(&be[0..3]);
    }
    Ok(b)
}

/// Hyphenated lower-case text form, as PostgreSQL prints a uuid.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[pgrx::pg_schema]
mod aveloxis {
    use pgrx::prelude::*;

    /// Deterministic contributor id for a forge user (see the module docs for the layout).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn platform_uuid(platform: i16, user_id: i64) -> pgrx::Uuid {
        match super::platform_uuid_bytes(platform, user_id) {
            Ok(bytes) => pgrx::Uuid::from_bytes(bytes),
            Err(e) => {
                ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string());
            }
        }
    }
}

#[cfg(feature = "pg_test")]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::{int, sql_error, text};
    use pgrx::prelude::*;

    #[pg_test]
    fn sql_vectors_match_augur_and_the_extended_layout() {
        for (platform, id, expected) in [
            (1, 1i64, "01000000-0100-0000-0000-000000000000"),
            (1, 29740296, "0101c5cd-0800-0000-0000-000000000000"),
            (2, 42, "02000000-2a00-0000-0000-000000000000"),
            (1, 4294967295, "01ffffff-ff00-0000-0000-000000000000"),
            (1, 4294967296, "01010000-0000-8000-0000-000000000000"),
            (1, 4294967301, "01010000-0005-8000-0000-000000000000"),
        ] {
            let got = text(&format!(
                "SELECT aveloxis.platform_uuid({platform}::smallint, {id})::text"
            ));
            assert_eq!(got.as_deref(), Some(expected), "({platform}, {id})");
        }
    }

    #[pg_test]
    fn declared_immutable_strict_parallel_safe() {
        let flags = text(
            "SELECT provolatile::text || proisstrict::text || proparallel::text FROM pg_proc
             WHERE oid = 'aveloxis.platform_uuid(smallint, bigint)'::regprocedure",
        );
        assert_eq!(flags.as_deref(), Some("itrues"));
        assert_eq!(text("SELECT aveloxis.platform_uuid(NULL, 1)::text"), None);
        assert_eq!(text("SELECT aveloxis.platform_uuid(1::smallint, NULL)::text"), None);
    }

    #[pg_test]
    fn bad_input_gets_a_clear_error() {
        for (sql, expected) in [
            (
                "SELECT aveloxis.platform_uuid(1::smallint, 0)",
                "22023 user id 0 is not positive",
            ),
            (
                "SELECT aveloxis.platform_uuid(1::smallint, -5)",
                "22023 user id -5 is not positive",
            ),
            (
                "SELECT aveloxis.platform_uuid(0::smallint, 1)",
                "22023 platform 0 is outside 1..255",
            ),
            (
                "SELECT aveloxis.platform_uuid(256::smallint, 1)",
                "22023 platform 256 is outside 1..255",
            ),
        ] {
            let err = sql_error(sql).unwrap_or_else(|| panic!("{sql} succeeded"));
            assert!(err.starts_with(expected), "{sql}: {err}");
        }
    }

    #[pg_test]
    fn no_large_id_collides_with_a_small_one_set_based() {
        // 50,000 small ids, 50,000 multiples of 2^32 (the Go layout's collision class)
        // and 50,000 ids just above 2^32, across two platforms: all distinct.
        let distinct = int("SELECT count(DISTINCT aveloxis.platform_uuid(p, id)) FROM (
                 SELECT id FROM generate_series(1::bigint, 50000) id
                 UNION ALL SELECT k * 4294967296 FROM generate_series(1::bigint, 50000) k
                 UNION ALL SELECT 4294967296 + k FROM generate_series(1::bigint, 50000) k
             ) ids, (VALUES (1::smallint), (2::smallint)) platforms(p)");
        assert_eq!(distinct, Some(300_000));
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use proptest::prelude::*;

    fn text(platform: i16, id: i64) -> String {
        uuid_text(&platform_uuid_bytes(platform, id).unwrap())
    }

    #[test]
    fn augur_compatible_vectors() {
        // Vectors from Augur's GithubUUID / the Go system's pinned tests.
        assert_eq!(text(1, 1), "01000000-0100-0000-0000-000000000000");
        assert_eq!(text(1, 29740296), "0101c5cd-0800-0000-0000-000000000000");
        assert_eq!(text(2, 42), "02000000-2a00-0000-0000-000000000000");
        assert_eq!(text(3, 1), "03000000-0100-0000-0000-000000000000");
        assert_eq!(text(1, u32::MAX as i64), "01ffffff-ff00-0000-0000-000000000000");
    }

    #[test]
    fn extended_layout_vectors() {
        // 2^32: the Go layout gives the same UUID as id 1; ours is marked and distinct.
        assert_eq!(text(1, 1 << 32), "01010000-0000-8000-0000-000000000000");
        assert_eq!(text(1, (1 << 32) + 5), "01010000-0005-8000-0000-000000000000");
        assert_eq!(text(1, 1 << 40), "01000000-0000-8000-0001-000000000000");
        assert_eq!(text(255, i64::MAX), "ffffffff-ffff-807f-ffff-000000000000");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(platform_uuid_bytes(1, 0), Err(PlatformUuidError::UserIdNotPositive(0)));
        assert_eq!(
            platform_uuid_bytes(1, -1),
            Err(PlatformUuidError::UserIdNotPositive(-1))
        );
        assert_eq!(platform_uuid_bytes(0, 1), Err(PlatformUuidError::PlatformOutOfRange(0)));
        assert_eq!(
            platform_uuid_bytes(256, 1),
            Err(PlatformUuidError::PlatformOutOfRange(256))
        );
        assert_eq!(
            platform_uuid_bytes(-3, 1),
            Err(PlatformUuidError::PlatformOutOfRange(-3))
        );
        assert!(PlatformUuidError::UserIdNotPositive(0)
            .to_string()
            .contains("not positive"));
    }

    #[test]
    fn multiples_of_2_pow_32_never_alias_small_ids() {
        // Every k * 2^32 has zero low 32 bits: exactly the Go layout's collision class.
        for k in (1i64..=1 << 16).chain([(1 << 31) - 1, i64::MAX >> 32]) {
            let big = platform_uuid_bytes(1, k << 32).unwrap();
            assert_eq!(big[6], EXTENDED_LAYOUT_MARKER, "k={k}");
            let small_candidate = k & 0xffff_ffff;
            if small_candidate > 0 {
                assert_ne!(big, platform_uuid_bytes(1, small_candidate).unwrap(), "k={k}");
            }
        }
    }

    /// Decode the id back out of either layout: if decoding is exact, the map is injective.
    fn decode(b: &[u8; 16]) -> (u8, u64) {
        if b[6] == EXTENDED_LAYOUT_MARKER {
            let mut be = [0u8; 8];
            be[0..3].copy_from_slice(&b[7..10]);
            be[3..8].copy_from_slice(&b[1..6]);
            (b[0], u64::from_be_bytes(be))
        } else {
            (b[0], u32::from_be_bytes(b[1..5].try_into().unwrap()) as u64)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn large_ids_never_equal_small_ids(
            platform in 1i16..=255,
            large in (1i64 << 32)..=i64::MAX,
            small in 1i64..(1i64 << 32),
            other_platform in 1i16..=255,
        ) {
            let l = platform_uuid_bytes(platform, large).unwrap();
            let s = platform_uuid_bytes(other_platform, small).unwrap();
            prop_assert_ne!(l, s);
            // Layouts are told apart by byte 6 alone.
            prop_assert_eq!(l[6], EXTENDED_LAYOUT_MARKER);
            prop_assert_eq!(&s[5..], &[0u8; 11][..]);
        }

        #[test]
        fn every_id_round_trips(platform in 1i16..=255, id in 1i64..=i64::MAX) {
            let b = platform_uuid_bytes(platform, id).unwrap();
            prop_assert_eq!(decode(&b), (platform as u8, id as u64));
        }

        #[test]
        fn eightknot_prefix_unique_below_2_pow_40(
            a in 1i64..(1i64 << 40),
            b in 1i64..(1i64 << 40),
        ) {
            prop_assume!(a != b);
            let ta = text(1, a);
            let tb = text(1, b);
            prop_assert_ne!(&ta[..15], &tb[..15]);
        }

        #[test]
        fn multiples_of_2_pow_32_random_k(k in 1i64..=(i64::MAX >> 32), platform in 1i16..=255) {
            let big = platform_uuid_bytes(platform, k << 32).unwrap();
            prop_assert_eq!(decode(&big), (platform as u8, (k << 32) as u64));
            prop_assert_eq!(big[6], EXTENDED_LAYOUT_MARKER);
        }
    }
}
