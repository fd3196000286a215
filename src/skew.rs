//! The server's clock, learned from the `Date` of its responses: the offset every front door
//! that opts in signs (and judges identity expiry) with.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::clock::{Clock, OffsetClock};

/// Learns the server's clock offset from response `Date` headers and shares it with every
/// clone (and with the signing layer, which signs, and judges identity expiry, with the
/// corrected time).
///
/// An offset is applied to signatures when it is plausible (within `max_offset`), or when a
/// second response agrees with it (within [`AGREEMENT_MS`]): one response with a wild `Date`
/// never dates signatures years off. Identity expiry is judged only by an offset two responses
/// agreed on (confirmed), so no single `Date` can make a valid token look expired.
pub(crate) struct SkewTracker {
    clock: OffsetClock<Arc<dyn Clock>>,
    threshold_ms: i64,
    max_offset_ms: i64,
    /// The local second of the last measurement: one a second is plenty.
    measured_second: AtomicI64,
    /// The offset measured last: an implausible one is applied, and any is confirmed, when
    /// the next measurement agrees with it.
    last: std::sync::Mutex<Option<i64>>,
}

/// `Date` has whole seconds: an offset below this is indistinguishable from none.
const DATE_RESOLUTION_MS: i64 = 1_000;

/// Two measured offsets agree when they are this close: the resolution of `Date`, and the
/// time the answers took, either way.
pub(crate) const AGREEMENT_MS: i64 = 2_000;

/// Milliseconds in `d`, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SkewTracker {
    pub(crate) fn new(base: Arc<dyn Clock>, threshold: Duration, max_offset: Duration) -> Self {
        Self {
            clock: OffsetClock::new(base),
            threshold_ms: millis(threshold),
            max_offset_ms: millis(max_offset),
            measured_second: AtomicI64::new(i64::MIN),
            last: std::sync::Mutex::new(None),
        }
    }

    /// The corrected clock, borrowed.
    #[cfg(feature = "reqwest")]
    pub(crate) fn clock_ref(&self) -> &OffsetClock<Arc<dyn Clock>> {
        &self.clock
    }

    /// The corrected clock the signing layer reads.
    #[cfg(feature = "client")]
    pub(crate) fn clock(&self) -> OffsetClock<Arc<dyn Clock>> {
        self.clock.clone()
    }

    /// The offset applied when signing, in milliseconds (server minus local).
    pub(crate) fn offset_millis(&self) -> i64 {
        self.clock.offset_millis()
    }

    /// Whether the measured offset is beyond the threshold at which a 401 is retried.
    #[cfg(feature = "client")]
    pub(crate) fn exceeds_threshold(&self) -> bool {
        self.beyond_threshold(self.clock.offset_millis())
    }

    /// Whether `offset` is beyond the threshold at which a 401 is retried.
    #[cfg(feature = "client")]
    pub(crate) fn beyond_threshold(&self, offset: i64) -> bool {
        offset.saturating_abs() > self.threshold_ms
    }

    /// The local, uncorrected time.
    pub(crate) fn local_now(&self) -> i64 {
        self.clock.base_millis()
    }

    /// The server's time as best known.
    #[cfg(feature = "client")]
    pub(crate) fn server_now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The server's time by the offset two answers agreed on: what expiry is judged by.
    #[cfg(feature = "client")]
    pub(crate) fn confirmed_server_now(&self) -> i64 {
        self.clock.confirmed_now_millis()
    }

    /// Records the offset measured from a response's `Date`, sent at `sent` and received at
    /// `received` (local milliseconds). Cached responses (with `Age`) and unparsable dates are
    /// ignored. Once a second is enough, except for a 401, which may be the symptom of skew and
    /// is always measured.
    pub(crate) fn observe(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        sent: i64,
        received: i64,
    ) {
        let second = received.div_euclid(1000);
        if status != StatusCode::UNAUTHORIZED
            && self.measured_second.load(Ordering::Relaxed) == second
        {
            return;
        }
        if headers.get(http::header::AGE).is_some() {
            return;
        }
        let Some(date_ms) = crate::clock::date_millis(headers) else {
            return;
        };
        // The server stamped Date somewhere in [date, date + 1 s) while we waited.
        let server = date_ms + DATE_RESOLUTION_MS / 2;
        let midpoint = sent + (received - sent) / 2;
        let offset = server.saturating_sub(midpoint);
        self.measured_second.store(second, Ordering::Relaxed);
        self.accept(if offset.saturating_abs() < DATE_RESOLUTION_MS {
            0
        } else {
            offset
        });
    }

    /// Applies a measured `offset` if it is plausible, or if it agrees with the one measured
    /// before it; confirms it (for judging expiry) only in the second case.
    fn accept(&self, offset: i64) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let agreed = last.is_some_and(|l| l.abs_diff(offset) <= AGREEMENT_MS.unsigned_abs());
        if offset.saturating_abs() <= self.max_offset_ms || agreed {
            self.clock.set_offset_millis(offset);
        }
        if agreed {
            self.clock.set_confirmed_offset_millis(offset);
        }
        *last = Some(offset);
    }
}

impl std::fmt::Debug for SkewTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkewTracker")
            .field("offset_ms", &self.clock.offset_millis())
            .field("threshold_ms", &self.threshold_ms)
            .field("max_offset_ms", &self.max_offset_ms)
            .finish()
    }
}

#[cfg(all(test, feature = "client"))]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use http::HeaderValue;

    fn tracker(local: i64) -> (SkewTracker, FixedClock) {
        let base = FixedClock::new(local);
        (
            SkewTracker::new(
                Arc::new(base.clone()),
                Duration::from_secs(5),
                Duration::from_secs(3600),
            ),
            base,
        )
    }

    fn date(text: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::DATE, HeaderValue::from_static(text));
        h
    }

    // Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s
    const DATE_MS: i64 = 784_111_777_000;

    #[test]
    fn learns_offset_from_date_at_the_midpoint() {
        let (t, _) = tracker(DATE_MS - 60_000);
        t.observe(
            StatusCode::OK,
            &date("Sun, 06 Nov 1994 08:49:37 GMT"),
            DATE_MS - 60_200,
            DATE_MS - 59_800,
        );
        assert_eq!(t.offset_millis(), 60_500);
        assert!(t.exceeds_threshold());
        assert_eq!(t.server_now(), DATE_MS + 500);
    }

    #[test]
    fn agreeing_clocks_apply_no_offset() {
        let (t, _) = tracker(DATE_MS);
        t.observe(
            StatusCode::OK,
            &date("Sun, 06 Nov 1994 08:49:37 GMT"),
            DATE_MS,
            DATE_MS + 40,
        );
        assert_eq!(t.offset_millis(), 0);
        assert!(!t.exceeds_threshold());
    }

    #[test]
    fn cached_and_garbage_dates_are_ignored() {
        let (t, _) = tracker(0);
        let mut cached = date("Sun, 06 Nov 1994 08:49:37 GMT");
        cached.insert(http::header::AGE, HeaderValue::from_static("30"));
        t.observe(StatusCode::OK, &cached, 0, 0);
        assert_eq!(t.offset_millis(), 0);
        for garbage in [
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37",
            "",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "\u{0}",
        ] {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(garbage) {
                h.insert(http::header::DATE, v);
            }
            t.observe(StatusCode::OK, &h, 0, 0);
            assert_eq!(t.offset_millis(), 0, "{garbage:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            http::header::DATE,
            HeaderValue::from_bytes(&[0xff, b'x']).expect("opaque header"),
        );
        t.observe(StatusCode::OK, &h, 0, 0);
        assert_eq!(t.offset_millis(), 0);
    }

    #[test]
    fn measures_once_a_second_but_every_401() {
        let (t, _) = tracker(0);
        let ok = date("Sun, 06 Nov 1994 08:49:37 GMT");
        t.observe(StatusCode::OK, &ok, DATE_MS - 10_000, DATE_MS - 10_000);
        assert_eq!(t.offset_millis(), 10_500);
        // Same local second: not measured again.
        t.observe(StatusCode::OK, &ok, DATE_MS - 20_000, DATE_MS - 9_999);
        assert_eq!(t.offset_millis(), 10_500);
        // A 401 always is.
        t.observe(
            StatusCode::UNAUTHORIZED,
            &ok,
            DATE_MS - 9_500,
            DATE_MS - 9_500,
        );
        assert_eq!(t.offset_millis(), 10_000);
        // The next second is.
        t.observe(StatusCode::OK, &ok, DATE_MS - 30_000, DATE_MS - 8_500);
        assert_ne!(t.offset_millis(), 10_000);
    }

    #[test]
    fn one_wild_date_never_moves_the_clock_two_that_agree_do() {
        // 2100-01-01T00:00:00Z, 74 years ahead of the local clock.
        let wild = date("Fri, 01 Jan 2100 00:00:00 GMT");
        let wild_ms = 4_102_444_800_000;
        let (t, base) = tracker(DATE_MS);
        let at = |t: &SkewTracker, h: &HeaderMap, now: i64| t.observe(StatusCode::OK, h, now, now);
        at(&t, &wild, DATE_MS);
        assert_eq!(t.offset_millis(), 0, "one response is not believed");
        // A plausible one in between is applied, and forgets the wild one.
        base.set_millis(DATE_MS - 5_000);
        at(&t, &date("Sun, 06 Nov 1994 08:49:37 GMT"), DATE_MS - 5_000);
        assert_eq!(t.offset_millis(), 5_500);
        base.set_millis(DATE_MS + 2_000);
        at(&t, &wild, DATE_MS + 2_000);
        assert_eq!(t.offset_millis(), 5_500, "the wild one waits for a second");
        // A second that agrees (the same Date, 1.5 s later by the local clock): applied.
        base.set_millis(DATE_MS + 3_500);
        at(&t, &wild, DATE_MS + 3_500);
        assert_eq!(t.offset_millis(), wild_ms + 500 - (DATE_MS + 3_500));
    }

    #[test]
    fn expiry_is_judged_only_by_an_offset_two_answers_agreed_on() {
        let (t, base) = tracker(DATE_MS - 3_000_000);
        let at = |h: &HeaderMap, now: i64| {
            base.set_millis(now);
            t.observe(StatusCode::OK, h, now, now);
        };
        let fifty = DATE_MS + 500 - (DATE_MS - 3_000_000);
        // One plausible Date, 50 minutes ahead: signatures use it, expiry does not.
        at(&date("Sun, 06 Nov 1994 08:49:37 GMT"), DATE_MS - 3_000_000);
        assert_eq!(t.offset_millis(), fifty);
        assert_eq!(t.server_now(), DATE_MS + 500);
        assert_eq!(t.confirmed_server_now(), DATE_MS - 3_000_000);
        // A second that agrees (1.5 s later by both clocks): confirmed.
        at(&date("Sun, 06 Nov 1994 08:49:38 GMT"), DATE_MS - 2_998_500);
        assert_eq!(
            t.confirmed_server_now() - (DATE_MS - 2_998_500),
            fifty - 500
        );
        // A third that disagrees (08:00:00 GMT is 2,977 s before DATE_MS) moves the signing
        // offset, not the confirmed one.
        at(&date("Sun, 06 Nov 1994 08:00:00 GMT"), DATE_MS - 2_970_000);
        assert_eq!(t.offset_millis(), -6_500);
        assert_eq!(
            t.confirmed_server_now() - (DATE_MS - 2_970_000),
            fifty - 500
        );
    }

    #[test]
    fn two_wild_dates_that_disagree_are_both_ignored() {
        let (t, base) = tracker(DATE_MS);
        for (i, text) in [
            "Fri, 01 Jan 2100 00:00:00 GMT",
            "Sat, 01 Jan 2050 00:00:00 GMT",
            "Thu, 01 Jan 1970 00:00:01 GMT",
        ]
        .into_iter()
        .enumerate()
        {
            let now = DATE_MS + 1_000 * i64::try_from(i).expect("small");
            base.set_millis(now);
            t.observe(StatusCode::OK, &date(text), now, now);
            assert_eq!(t.offset_millis(), 0, "{text}");
        }
    }
}
