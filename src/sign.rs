//! The pure signer: timestamps, the canonical message and the `lmts-signature` value.
//!
//! ```text
//! message   = timestamp "\n" UPPERCASE(method) "\n" path_and_query "\n" body
//! signature = base64(HMAC-SHA256(base64_decode(secret), message))
//! ```
//!
//! [`HmacCredentials::sign`] feeds those parts to a clone of a MAC keyed once at construction,
//! part by part, and formats the 44-character signature on the stack: no heap allocation.
//! [`canonical_message`] builds the same bytes as one buffer for diagnostics and tests.
//!
//! ```
//! use limitless_auth::{HmacCredentials, canonical_message};
//!
//! let creds = HmacCredentials::new("token-123", "c2VjcmV0")?;
//! let sig = creds.sign("2026-03-30T12:00:00.000Z", "POST", "/orders", br#"{"foo":"bar"}"#);
//! assert_eq!(sig.as_ref(), "lqUdGxW7CcqHKaX99McgZb/TddUNxiFaIm5OiM/GMI0=");
//! assert_eq!(
//!     canonical_message("2026-03-30T12:00:00.000Z", "post", "/orders", b"{}"),
//!     b"2026-03-30T12:00:00.000Z\nPOST\n/orders\n{}".to_vec(),
//! );
//! # Ok::<(), limitless_auth::CredentialError>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac as _;

use crate::clock::Clock;
use crate::credentials::{HmacCredentials, HmacSha256};

/// Length of an `lmts-signature` value: base64 of 32 bytes, padded.
pub(crate) const SIGNATURE_LEN: usize = 44;
/// Length of an `lmts-timestamp` value: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) const TIMESTAMP_LEN: usize = 24;

/// An `lmts-signature` value: 44 characters of padded standard base64, held on the stack.
///
/// Its `Debug` output is redacted; read it with [`Signature::as_str`] or `as_ref()`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    buf: [u8; SIGNATURE_LEN],
}

impl Signature {
    /// The signature text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf).expect("base64 output is ASCII")
    }

    /// The signature text as bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl AsRef<str> for Signature {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(<redacted>)")
    }
}

impl HmacCredentials {
    /// Signs one request: `timestamp`, `method` (upper-cased here), the request-target
    /// `path_and_query` exactly as it will be sent, and the exact body bytes.
    ///
    /// The parts are fed to a clone of the pre-keyed MAC one after another; no message buffer
    /// is built and nothing is allocated.
    ///
    /// ```
    /// # use limitless_auth::HmacCredentials;
    /// let creds = HmacCredentials::new("dGVzdC10b2tlbi0x", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
    /// let sig = creds.sign("2026-03-23T12:34:56.789Z", "GET", "/orders", b"");
    /// assert_eq!(sig.as_ref(), "VRFEOihUCB68L5y2EFQdFkMng+o6cVnHo6euNPlEFZ0=");
    /// # Ok::<(), limitless_auth::CredentialError>(())
    /// ```
    #[inline]
    pub fn sign(
        &self,
        timestamp: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Signature {
        self.sign_bytes(
            timestamp.as_bytes(),
            method.as_bytes(),
            path_and_query.as_bytes(),
            body,
        )
    }

    /// [`HmacCredentials::sign`] over byte slices, for callers that hold bytes already.
    #[inline]
    pub(crate) fn sign_bytes(
        &self,
        timestamp: &[u8],
        method: &[u8],
        path_and_query: &[u8],
        body: &[u8],
    ) -> Signature {
        let mut mac = self.mac().clone();
        feed(&mut mac, timestamp, method, path_and_query, body);
        let tag: [u8; 32] = mac.finalize().into_bytes().into();
        Signature {
            buf: encode_tag(&tag),
        }
    }
}

/// Standard padded base64 of a 32-byte tag, written into a stack buffer.
#[inline]
fn encode_tag(tag: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
    let mut out = [0u8; SIGNATURE_LEN];
    // 32 bytes always encode to exactly 44 characters, so this cannot fail.
    let written = STANDARD.encode_slice(tag, &mut out).unwrap_or(0);
    debug_assert_eq!(written, SIGNATURE_LEN);
    out
}

/// Feeds the canonical message to `mac`, part by part; the body is never copied.
#[inline(always)]
fn feed(mac: &mut HmacSha256, ts: &[u8], m: &[u8], pq: &[u8], body: &[u8]) {
    mac.update(ts);
    mac.update(b"\n");
    update_upper(mac, m);
    mac.update(b"\n");
    mac.update(pq);
    mac.update(b"\n");
    mac.update(body);
}

/// Feeds `method` to the MAC upper-cased (ASCII), without allocating.
fn update_upper(mac: &mut HmacSha256, method: &[u8]) {
    let mut chunk = [0u8; 32];
    for part in method.chunks(chunk.len()) {
        let out = &mut chunk[..part.len()];
        out.copy_from_slice(part);
        out.make_ascii_uppercase();
        mac.update(out);
    }
}

/// The exact bytes that are signed for a request, as one buffer (for diagnostics and tests;
/// the signer itself never builds it).
pub fn canonical_message(
    timestamp: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(timestamp.len() + method.len() + path_and_query.len() + body.len() + 3);
    out.extend_from_slice(timestamp.as_bytes());
    out.push(b'\n');
    out.extend(method.bytes().map(|b| b.to_ascii_uppercase()));
    out.push(b'\n');
    out.extend_from_slice(path_and_query.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// A timestamp could not be formatted or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The time lies outside the years 0000–9999, which the format cannot express.
    #[error("time {millis} ms since the Unix epoch is outside the years 0000-9999")]
    OutOfRange {
        /// The offending time.
        millis: i64,
    },
    /// The text is not of the form `YYYY-MM-DDTHH:MM:SS.mmmZ` or names no real instant.
    #[error("timestamp is not of the form YYYY-MM-DDTHH:MM:SS.mmmZ")]
    Malformed,
}

const MS_PER_DAY: i64 = 86_400_000;
/// 0000-01-01T00:00:00.000Z
const MIN_MILLIS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// An `lmts-timestamp` value, `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, held on the stack.
///
/// ```
/// use limitless_auth::Timestamp;
/// let ts = Timestamp::from_unix_millis(1_774_269_296_789)?;
/// assert_eq!(ts.as_str(), "2026-03-23T12:34:56.789Z");
/// assert_eq!(Timestamp::parse("2026-03-23T12:34:56.789Z")?.unix_millis(), 1_774_269_296_789);
/// # Ok::<(), limitless_auth::TimestampError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    buf: [u8; TIMESTAMP_LEN],
    millis: i64,
}

impl Timestamp {
    /// Reads `clock` and formats the time.
    #[inline]
    pub fn now<C: Clock + ?Sized>(clock: &C) -> Result<Self, TimestampError> {
        Self::from_unix_millis(clock.now_millis())
    }

    /// Formats a time given in milliseconds since the Unix epoch, on the stack.
    #[inline]
    pub fn from_unix_millis(millis: i64) -> Result<Self, TimestampError> {
        if !(MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
            return Err(TimestampError::OutOfRange { millis });
        }
        let minute = millis.div_euclid(MS_PER_MINUTE);
        let mut buf = format_minute(minute);
        // 0 <= rem_euclid < 60_000.
        let in_minute = millis.rem_euclid(MS_PER_MINUTE) as u32;
        let (secs, ms) = (in_minute / 1000, in_minute % 1000);
        buf[17..19].copy_from_slice(&DIGIT_PAIRS[secs as usize]);
        buf[20] = b'0' + (ms / 100) as u8;
        buf[21..23].copy_from_slice(&DIGIT_PAIRS[(ms % 100) as usize]);
        Ok(Self { buf, millis })
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS.mmmZ` strictly: exactly three millisecond digits, a literal
    /// `Z`, a real calendar date, no leap second.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let b: &[u8; TIMESTAMP_LEN] = text
            .as_bytes()
            .try_into()
            .map_err(|_| TimestampError::Malformed)?;
        for (i, c) in b.iter().enumerate() {
            let ok = match i {
                4 | 7 => *c == b'-',
                10 => *c == b'T',
                13 | 16 => *c == b':',
                19 => *c == b'.',
                23 => *c == b'Z',
                _ => c.is_ascii_digit(),
            };
            if !ok {
                return Err(TimestampError::Malformed);
            }
        }
        let num = |r: std::ops::Range<usize>| {
            b[r].iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
        };
        let (year, month, day) = (num(0..4), num(5..7), num(8..10));
        let (hour, min, sec, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || min > 59
            || sec > 59
        {
            return Err(TimestampError::Malformed);
        }
        let millis = days_from_civil(year, month, day) * MS_PER_DAY
            + ((hour * 60 + min) * 60 + sec) * 1000
            + ms;
        Ok(Self { buf: *b, millis })
    }

    /// The timestamp text.
    #[inline]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf).expect("timestamp text is ASCII")
    }

    /// The timestamp text as bytes.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        self.millis
    }
}

impl AsRef<str> for Timestamp {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Timestamp").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "00", "01", … "99".
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

const MS_PER_MINUTE: i64 = 60_000;

/// `YYYY-MM-DDTHH:MM:00.000Z` for a minute counted from the epoch (years 0000..=9999).
fn format_minute(minute: i64) -> [u8; TIMESTAMP_LEN] {
    let (year, month, day) = civil_from_days(minute.div_euclid(24 * 60));
    let in_day = minute.rem_euclid(24 * 60);
    let pair = |v: i64| DIGIT_PAIRS[v.rem_euclid(100) as usize];
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    buf[0..2].copy_from_slice(&pair(year / 100));
    buf[2..4].copy_from_slice(&pair(year));
    buf[5..7].copy_from_slice(&pair(month));
    buf[8..10].copy_from_slice(&pair(day));
    buf[11..13].copy_from_slice(&pair(in_day / 60));
    buf[14..16].copy_from_slice(&pair(in_day % 60));
    buf
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (400-year era arithmetic).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0 … February = 11
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day counted from 1970-01-01.
#[inline]
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use proptest::prelude::*;

    #[test]
    fn formats_known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_774_269_296_789, "2026-03-23T12:34:56.789Z"),
            (1_767_225_600_000, "2026-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (MIN_MILLIS, "0000-01-01T00:00:00.000Z"),
            (MAX_MILLIS, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, text) in cases {
            let ts = Timestamp::from_unix_millis(ms).expect("in range");
            assert_eq!(ts.as_str(), text, "{ms}");
            assert_eq!(Timestamp::parse(text).expect("valid").unix_millis(), ms);
        }
    }

    #[test]
    fn minute_boundaries_and_the_edges_of_the_range() {
        let chrono_text = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .expect("in range")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let t0 = 1_774_269_299_999; // 12:34:59.999, next to a minute boundary
        let forward = (t0 - 130_000..t0 + 130_000).step_by(997);
        let backward = (t0 - 130_000..t0 + 130_000).rev().step_by(1_003);
        for ms in forward
            .chain(backward)
            .chain([t0, t0 + 1, t0, t0 - 60_000, t0 + 1])
        {
            let ts = Timestamp::from_unix_millis(ms).expect("in range");
            assert_eq!(ts.as_str(), chrono_text(ms), "{ms}");
        }
        for ms in [-1, -60_000, -60_001, 0, MIN_MILLIS, MAX_MILLIS, -1] {
            let ts = Timestamp::from_unix_millis(ms).expect("in range");
            assert_eq!(
                Timestamp::parse(ts.as_str()).expect("parses").unix_millis(),
                ms
            );
        }
    }

    #[test]
    fn rejects_out_of_range_times() {
        for ms in [MIN_MILLIS - 1, MAX_MILLIS + 1, i64::MIN, i64::MAX] {
            assert_eq!(
                Timestamp::from_unix_millis(ms),
                Err(TimestampError::OutOfRange { millis: ms })
            );
        }
    }

    #[test]
    fn parse_is_strict() {
        for bad in [
            "",
            "2026-03-23T12:34:56.789",
            "2026-03-23T12:34:56.789z",
            "2026-03-23 12:34:56.789Z",
            "2026-03-23T12:34:56.78Z",
            "2026-03-23T12:34:56.7890Z",
            "2026-03-23T12:34:56Z",
            "2026-03-23T12:34:56.789+00:00",
            "2026-13-23T12:34:56.789Z",
            "2026-00-23T12:34:56.789Z",
            "2026-02-29T12:34:56.789Z",
            "2026-04-31T12:34:56.789Z",
            "2026-03-23T24:00:00.000Z",
            "2026-03-23T12:60:56.789Z",
            "2026-03-23T12:34:60.000Z",
            "2026-03-2aT12:34:56.789Z",
            "+026-03-23T12:34:56.789Z",
            "２026-03-23T12:34:56.789Z",
        ] {
            assert_eq!(
                Timestamp::parse(bad),
                Err(TimestampError::Malformed),
                "{bad:?}"
            );
        }
        assert!(Timestamp::parse("2024-02-29T23:59:59.999Z").is_ok());
    }

    #[test]
    fn now_reads_the_clock() {
        let clock = FixedClock::new(1_774_269_296_789);
        assert_eq!(
            Timestamp::now(&clock).expect("in range").as_str(),
            "2026-03-23T12:34:56.789Z"
        );
    }

    #[test]
    fn a_timestamp_shows_as_its_text() {
        let ts = Timestamp::from_unix_millis(1_774_269_296_789).expect("in range");
        assert_eq!(ts.as_ref(), "2026-03-23T12:34:56.789Z");
        assert_eq!(ts.to_string(), "2026-03-23T12:34:56.789Z");
        assert_eq!(
            format!("{ts:?}"),
            r#"Timestamp("2026-03-23T12:34:56.789Z")"#
        );
    }

    #[test]
    fn signature_debug_is_redacted() {
        let creds = HmacCredentials::new("id", "c2VjcmV0").expect("valid");
        let sig = creds.sign("t", "GET", "/", b"");
        let shown = format!("{sig:?}");
        assert!(!shown.contains(sig.as_str()));
        assert_eq!(shown, "Signature(<redacted>)", "says what it is");
        assert_eq!(sig.as_str().len(), SIGNATURE_LEN);
    }

    #[test]
    fn long_lower_case_methods_are_upper_cased_across_chunks() {
        let creds = HmacCredentials::new("id", "c2VjcmV0").expect("valid");
        let lower = "x".repeat(70);
        let upper = lower.to_ascii_uppercase();
        assert_eq!(
            creds.sign("t", &lower, "/", b""),
            creds.sign("t", &upper, "/", b"")
        );
    }

    proptest! {
        #[test]
        fn tags_encode_to_44_characters_that_decode_back(tag in proptest::array::uniform32(any::<u8>())) {
            let text = encode_tag(&tag);
            prop_assert_eq!(text[43], b'=');
            prop_assert_eq!(STANDARD.decode(text).expect("valid base64"), tag.to_vec());
        }

        #[test]
        fn format_and_parse_round_trip(ms in MIN_MILLIS..=MAX_MILLIS) {
            let ts = Timestamp::from_unix_millis(ms).expect("in range");
            prop_assert_eq!(Timestamp::parse(ts.as_str()).expect("own output parses").unix_millis(), ms);
        }

        #[test]
        fn matches_chrono(ms in -2_000_000_000_000i64..=4_000_000_000_000i64) {
            let expected = chrono::DateTime::from_timestamp_millis(ms)
                .expect("in chrono's range")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let ts = Timestamp::from_unix_millis(ms).expect("in range");
            prop_assert_eq!(ts.as_str(), expected);
        }

        #[test]
        fn civil_round_trip(days in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
