//! Sanitizing staged payloads at the boundary (docs/staging-contract.md).
//!
//! Agents stage the forge's JSON as text. Before the drain parses it, the text is
//! cleaned of what PostgreSQL refuses or what analysts must never see:
//! * `\u0000` escapes: jsonb rejects them (SQLSTATE 22P05) and would lose the row;
//! * unpaired UTF-16 surrogate escapes (`\ud800` alone): also 22P05; they become U+FFFD;
//! * control characters other than tab, newline and carriage return (C0, DEL, C1),
//!   escaped (`\u0085`) or raw: dropped, as the reference system does for text. JSON
//!   allows raw DEL and C1 inside strings (only C0 must be escaped), and raw C0 would
//!   make the whole document unparsable, so both forms are removed.
//!
//! A backslash preceded by an odd number of backslashes is itself escaped (`\\u0000`
//! is the literal text `\u0000`) and is kept.

use std::borrow::Cow;

/// A raw control character to drop at `bytes[i]`: its length in bytes (1 for C0 and DEL,
/// 2 for C1, which UTF-8 writes as 0xC2 0x80..=0x9F), or 0.
#[inline]
fn raw_control_len(bytes: &[u8], i: usize) -> usize {
    match bytes[i] {
        b'\t' | b'\n' | b'\r' => 0,
        0x00..=0x1f | 0x7f => 1,
        0xc2 if i + 1 < bytes.len() && (0x80..=0x9f).contains(&bytes[i + 1]) => 2,
        _ => 0,
    }
}

/// Whether the document needs any cleaning at all (the common case is no).
fn needs_cleaning(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"\\u").is_some()
        || bytes
            .iter()
            .enumerate()
            .any(|(i, &b)| (b < 0x20 || b == 0x7f || b == 0xc2) && raw_control_len(bytes, i) > 0)
}

/// Cleans a JSON document's escapes and raw control characters, and drops byte-order
/// marks before it (JSON has none; an editor or a proxy may add one); returns the input
/// untouched when nothing needs it.
pub fn sanitize_json(input: &str) -> Cow<'_, str> {
    let unmarked = input.trim_start_matches('\u{feff}');
    if unmarked.len() != input.len() {
        return Cow::Owned(sanitize_json(unmarked).into_owned());
    }
    let bytes = input.as_bytes();
    if !needs_cleaning(bytes) {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut last = 0;
    let mut changed = false;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            let raw = raw_control_len(bytes, i);
            if raw > 0 {
                out.push_str(&input[last..i]);
                i += raw;
                last = i;
                changed = true;
            } else {
                i += 1;
            }
            continue;
        }
        // An escape starts here; `\\` consumes both backslashes.
        if i + 1 < bytes.len() && bytes[i + 1] == b'\\' {
            i += 2;
            continue;
        }
        if i + 5 < bytes.len() && bytes[i + 1] == b'u' {
            let Some(code) = hex4(&bytes[i + 2..i + 6]) else {
                i += 2;
                continue;
            };
            let replacement: Option<&str> = match code {
                0x0000 => Some(""),
                0x0009 | 0x000a | 0x000d => None,
                0x0001..=0x001f | 0x007f..=0x009f => Some(""),
                0xd800..=0xdbff => {
                    // A high surrogate is fine when a low surrogate escape follows.
                    let paired = i + 11 < bytes.len()
                        && bytes[i + 6] == b'\\'
                        && bytes[i + 7] == b'u'
                        && hex4(&bytes[i + 8..i + 12]).is_some_and(|c| (0xdc00..=0xdfff).contains(&c));
                    if paired {
                        i += 12;
                        continue;
                    }
                    Some("\u{fffd}")
                }
                0xdc00..=0xdfff => Some("\u{fffd}"),
                _ => None,
            };
            if let Some(r) = replacement {
                out.push_str(&input[last..i]);
                out.push_str(r);
                last = i + 6;
                changed = true;
            }
            i += 6;
            continue;
        }
        i += 2;
    }
    if !changed {
        return Cow::Borrowed(input);
    }
    out.push_str(&input[last..]);
    Cow::Owned(out)
}

/// Why a (sanitized) payload is not JSON, with line and column; `None` when it is.
pub fn json_syntax_error(payload: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(payload)
        .err()
        .map(|e| e.to_string())
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    let s = std::str::from_utf8(&b[..4]).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Microseconds since 1970-01-01T00:00:00Z of an RFC 3339 / ISO 8601 timestamp as forges
/// write them (`2012-05-27T05:40:15Z`, `2021-03-04T10:11:12.345+01:00`), or `None` when
/// the text is not one, or is zero (`0001-01-01…`) or before 1970: unknown, not ancient.
pub fn parse_forge_timestamp(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s.trim()[start..i.min(start + 6)];
        micros = digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32);
    }
    let offset_seconds = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let secs = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_seconds;
    if seconds < 0 {
        return None;
    }
    Some(seconds * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn clean_documents_pass_through_borrowed() {
        let doc = r#"{"title":"plain \"quoted\" text \n","n":1}"#;
        assert!(matches!(sanitize_json(doc), Cow::Borrowed(_)));
        let accents = r#"{"t":"caf\u00e9 \u2603 \ud83d\ude00"}"#;
        assert!(matches!(sanitize_json(accents), Cow::Borrowed(_)));
    }

    #[test]
    fn nul_escapes_are_stripped_unless_escaped_themselves() {
        assert_eq!(sanitize_json(r#"{"b":"a\u0000b"}"#), r#"{"b":"ab"}"#);
        // `\\u0000` is a backslash followed by the text u0000: content, kept.
        assert_eq!(sanitize_json(r#"{"b":"a\\u0000b"}"#), r#"{"b":"a\\u0000b"}"#);
        // Three backslashes: an escaped backslash, then a real \u0000 escape.
        assert_eq!(sanitize_json(r#"{"b":"a\\\u0000b"}"#), r#"{"b":"a\\b"}"#);
        assert_eq!(sanitize_json(r#"\u0000\u0000"#), "");
    }

    #[test]
    fn raw_del_and_c1_dropped_other_text_kept() {
        // Raw DEL and C1 (U+0085 NEL, U+009F) are valid in JSON strings: dropped anyway.
        assert_eq!(sanitize_json("{\"t\":\"a\u{7f}b\u{85}c\u{9f}d\"}"), r#"{"t":"abcd"}"#);
        // Raw C0 would make the document unparsable: dropped, so the row survives.
        assert_eq!(sanitize_json("{\"t\":\"a\u{1}b\u{1b}c\"}"), r#"{"t":"abc"}"#);
        // Neighbours of C1 in UTF-8 (U+00A0 no-break space, U+00A9 ©, U+0100) are text.
        let text = "{\"t\":\"\u{a0}\u{a9}\u{100}\u{c0}\"}";
        assert!(matches!(sanitize_json(text), Cow::Borrowed(_)));
        // Byte-order marks before the document go; inside strings they are text.
        assert_eq!(
            sanitize_json("\u{feff}\u{feff}{\"t\":\"\u{feff}\"}"),
            "{\"t\":\"\u{feff}\"}"
        );
        // Whitespace between tokens stays.
        assert!(matches!(sanitize_json("{\n\t\"t\": 1\r\n}"), Cow::Borrowed(_)));
        // Both forms in one document, with an escaped backslash before a u.
        assert_eq!(sanitize_json("[\"\\\\u0085\u{85}\\u0085x\"]"), r#"["\\u0085x"]"#);
    }

    #[test]
    fn control_escapes_dropped_whitespace_kept() {
        assert_eq!(sanitize_json(r#""a\u0001\u001f\u007f\u0085b""#), r#""ab""#);
        assert_eq!(sanitize_json(r#""a\u0009\u000A\u000db""#), r#""a\u0009\u000A\u000db""#);
    }

    #[test]
    fn unpaired_surrogates_become_replacement_characters() {
        assert_eq!(sanitize_json(r#""x\ud800y""#), "\"x\u{fffd}y\"");
        assert_eq!(sanitize_json(r#""x\udc00""#), "\"x\u{fffd}\"");
        assert_eq!(sanitize_json(r#""\ud83d\ude00""#), r#""\ud83d\ude00""#);
        assert_eq!(sanitize_json(r#""\ud83d\u0041""#), "\"\u{fffd}\\u0041\"");
        // Truncated escapes are left for the JSON parser to report.
        assert_eq!(sanitize_json(r#""\ud8"#), r#""\ud8"#);
        assert_eq!(sanitize_json(r#""\u"#), r#""\u"#);
    }

    #[test]
    fn syntax_errors_say_where() {
        assert_eq!(json_syntax_error(r#"{"a": [1, 2]}"#), None);
        let e = json_syntax_error(r#"{"a": [1, 2"#).unwrap();
        assert!(e.contains("line 1 column 11"), "{e}");
        assert!(json_syntax_error("").is_some());
    }

    #[test]
    fn forge_timestamps() {
        assert_eq!(parse_forge_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_forge_timestamp("2012-05-27T05:40:15Z"),
            Some(1_338_097_215_000_000)
        );
        assert_eq!(
            parse_forge_timestamp("2012-05-27T07:40:15+02:00"),
            Some(1_338_097_215_000_000)
        );
        assert_eq!(
            parse_forge_timestamp("2012-05-27T05:40:15.5Z"),
            Some(1_338_097_215_500_000)
        );
        assert_eq!(
            parse_forge_timestamp("2012-05-27T05:40:15.123456789Z"),
            Some(1_338_097_215_123_456)
        );
        assert_eq!(
            parse_forge_timestamp("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000_000)
        );
        for unknown in [
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "",
            "null",
            "2023-02-29T00:00:00Z",
            "2012-13-01T00:00:00Z",
            "2012-05-27 05:40",
            "2012-05-27T05:40:15",
            "2012-05-27T05:40:15Zjunk",
            "2012-05-27T05:40:15.Z",
        ] {
            assert_eq!(parse_forge_timestamp(unknown), None, "{unknown}");
        }
    }
}

/// A jsonb value PostgreSQL's own `jsonb_in` built, returned as it is (pgrx's `JsonB`
/// would take it apart into serde values and print and parse it again).
pub struct ParsedJsonb(pgrx::pg_sys::Datum);

impl pgrx::IntoDatum for ParsedJsonb {
    fn into_datum(self) -> Option<pgrx::pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pgrx::pg_sys::Oid {
        pgrx::pg_sys::JSONBOID
    }
}

pgrx::impl_sql_translatable!(ParsedJsonb, "jsonb");

// SAFETY: the datum is returned to the function's caller, as pgrx's own types do.
unsafe impl pgrx::callconv::BoxRet for ParsedJsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut pgrx::callconv::FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

#[pgrx::pg_schema]
mod aveloxis_ops {
    use pgrx::prelude::*;

    /// A staged payload made safe to parse as jsonb (see the module docs).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn sanitize_json(payload: &str) -> String {
        super::sanitize_json(payload).into_owned()
    }

    /// `sanitize_json(payload)::jsonb` in one call: the text is copied once, into the
    /// C string `jsonb_in` reads, instead of three times (the sanitized `String`, the
    /// `text` made of it, and the cast's own C string). The drain's hot path; invalid
    /// JSON raises what the cast raises.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn sanitized_jsonb(payload: &str) -> super::ParsedJsonb {
        let clean = super::sanitize_json(payload);
        let Ok(cstring) = std::ffi::CString::new(clean.as_bytes()) else {
            // A text value cannot hold a NUL byte, and sanitizing removes bytes only.
            pgrx::error!("payload holds a NUL byte, which no JSON text can");
        };
        // SAFETY: jsonb_in reads a NUL-terminated C string that outlives the call, and
        // returns a palloc'd jsonb (or raises an error, which pgrx turns into a panic
        // that unwinds past `cstring` and is raised again as PostgreSQL's error).
        let datum =
            unsafe { pgrx::fcinfo::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(cstring.as_ptr().into())]) };
        match datum {
            Some(d) => super::ParsedJsonb(d),
            None => pgrx::error!("jsonb_in returned NULL for a non-NULL payload"),
        }
    }

    /// Why a payload is not JSON (with line and column), or NULL when it is.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn json_syntax_error(payload: &str) -> Option<String> {
        super::json_syntax_error(payload)
    }

    /// A forge timestamp, or NULL when it is missing, malformed, zero or before 1970.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn forge_timestamp(value: &str) -> Option<TimestampWithTimeZone> {
        // PostgreSQL counts microseconds from 2000-01-01, Unix from 1970-01-01.
        const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
        let micros = super::parse_forge_timestamp(value)?;
        TimestampWithTimeZone::try_from(micros - PG_EPOCH_OFFSET_MICROS).ok()
    }
}

#[cfg(feature = "pg_test")]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::{sql_error, text};
    use pgrx::prelude::*;

    #[pg_test]
    fn sanitized_payloads_parse_as_jsonb() {
        let got = text(r#"SELECT (aveloxis_ops.sanitize_json('{"t":"a\u0000b\ud800c\u0001"}')::jsonb) ->> 't'"#);
        assert_eq!(got.as_deref(), Some("ab\u{fffd}c"));
    }

    #[pg_test]
    fn sanitized_jsonb_is_the_cast_of_the_sanitized_text() {
        // Clean and unclean payloads, a byte-order mark, nesting, numbers the cast keeps
        // exactly, duplicate keys (the last wins), non-ASCII text.
        let payloads = [
            r#"{"id": 1, "body": "plain"}"#,
            r#"{"t":"a\u0000b\ud800c\u0001", "n": [1, {"x": null}]}"#,
            "\u{feff}{\"bom\": true}",
            r#"{"big": 123456789012345678901234567890, "f": 1.50, "e": 1e3}"#,
            r#"{"k": 1, "k": 2}"#,
            r#"[1, "two", {"three": 3}]"#,
            r#""just a string""#,
            r#"{"s": "süßes \u00e9t\u00e9 日本"}"#,
        ];
        for payload in payloads {
            let quoted = payload.replace('\'', "''");
            let same = text(&format!(
                "SELECT (aveloxis_ops.sanitized_jsonb('{quoted}') = aveloxis_ops.sanitize_json('{quoted}')::jsonb
                         AND aveloxis_ops.sanitized_jsonb('{quoted}')::text = aveloxis_ops.sanitize_json('{quoted}')::jsonb::text)::text"
            ));
            assert_eq!(same.as_deref(), Some("true"), "{payload}");
        }
        // Invalid JSON raises what the cast raises.
        let err = sql_error(r#"SELECT aveloxis_ops.sanitized_jsonb('{"a": ')"#).unwrap();
        let cast = sql_error(r#"SELECT aveloxis_ops.sanitize_json('{"a": ')::jsonb"#).unwrap();
        assert_eq!(err, cast);
        assert!(err.starts_with("22P02"), "{err}");
        assert_eq!(text("SELECT aveloxis_ops.sanitized_jsonb(NULL)::text"), None);
    }

    #[pg_test]
    fn forge_timestamps_in_sql() {
        let utc = |sql: &str| {
            text(&format!(
                "SELECT to_char(({sql}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
            ))
        };
        assert_eq!(
            utc("aveloxis_ops.forge_timestamp('2012-05-27T07:40:15.25+02:00')").as_deref(),
            Some("2012-05-27 05:40:15.250000")
        );
        assert_eq!(
            text("SELECT aveloxis_ops.forge_timestamp('0001-01-01T00:00:00Z')::text"),
            None
        );
        assert_eq!(text("SELECT aveloxis_ops.forge_timestamp('garbage')::text"), None);
    }

    #[pg_test]
    fn syntax_errors_in_sql() {
        assert_eq!(text(r#"SELECT aveloxis_ops.json_syntax_error('{"a": 1}')"#), None);
        assert_eq!(
            text(r#"SELECT aveloxis_ops.json_syntax_error('{"a": ')"#).as_deref(),
            Some("EOF while parsing a value at line 1 column 6")
        );
    }
}
