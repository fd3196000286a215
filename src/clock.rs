//! Time sources for signing.
//!
//! Every timestamp this crate puts on the wire comes from a [`Clock`]. Production code uses
//! [`SystemClock`]; tests inject a [`FixedClock`] so that the 30-second acceptance window and
//! clock skew can be exercised without sleeping; the client corrects its clock by the server's
//! measured offset.
//!
//! Times are plain `i64` milliseconds since the Unix epoch (UTC), the unit the protocol's
//! timestamps carry.
//!
//! ```
//! use limitless_auth::{Clock, FixedClock};
//!
//! let clock = FixedClock::new(1_774_269_296_789);
//! let shared = clock.clone();
//! shared.advance_millis(1_000);
//! assert_eq!(clock.now_millis(), 1_774_269_297_789);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in milliseconds since the Unix epoch (UTC).
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since 1970-01-01T00:00:00Z.
    fn now_millis(&self) -> i64;

    /// The time by which a credential's expiry is judged. It is [`Clock::now_millis`], unless
    /// the clock corrects itself by what servers say (as the client's does, from `Date`): then
    /// only a correction that more than one answer agreed on applies, so that one wrong answer
    /// cannot make a valid token look expired.
    fn confirmed_now_millis(&self) -> i64 {
        self.now_millis()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_millis(&self) -> i64 {
        (**self).now_millis()
    }

    fn confirmed_now_millis(&self) -> i64 {
        (**self).confirmed_now_millis()
    }
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_millis(&self) -> i64 {
        system_time_millis(SystemTime::now())
    }
}

/// Converts a [`SystemTime`] to milliseconds since the Unix epoch, saturating at the `i64` range.
#[inline]
pub(crate) fn system_time_millis(t: SystemTime) -> i64 {
    let millis = |d: std::time::Duration| {
        i64::try_from(d.as_secs())
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .and_then(|ms| ms.checked_add(i64::from(d.subsec_millis())))
    };
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => millis(d).unwrap_or(i64::MAX),
        Err(before) => millis(before.duration()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The instant an HTTP date (`Date`, `Retry-After`) names, in milliseconds since the Unix
/// epoch.
#[cfg(any(feature = "client", feature = "reqwest", feature = "ws"))]
pub(crate) fn http_date_millis(value: &str) -> Option<i64> {
    httpdate::parse_http_date(value.trim())
        .ok()
        .map(system_time_millis)
}

/// When an answer says it was sent: its `Date`, in milliseconds since the Unix epoch.
#[cfg(any(feature = "client", feature = "reqwest", feature = "ws"))]
pub(crate) fn date_millis(headers: &http::HeaderMap) -> Option<i64> {
    http_date_millis(headers.get(http::header::DATE)?.to_str().ok()?)
}

/// A clock that stands still until it is moved; clones share the same time.
///
/// Meant for tests: the time is set explicitly and never advances on its own.
#[derive(Clone, Debug)]
pub struct FixedClock {
    millis: Arc<AtomicI64>,
}

impl FixedClock {
    /// A clock reading `millis` milliseconds since the Unix epoch.
    pub fn new(millis: i64) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(millis)),
        }
    }

    /// Sets the time read by this clock and all its clones.
    pub fn set_millis(&self, millis: i64) {
        self.millis.store(millis, Ordering::Relaxed);
    }

    /// Moves the time by `delta` milliseconds (negative moves it back).
    pub fn advance_millis(&self, delta: i64) {
        self.millis.fetch_add(delta, Ordering::Relaxed);
    }
}

impl Clock for FixedClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::Relaxed)
    }
}

/// A clock that reads a base clock and adds a shared, adjustable offset.
///
/// The client uses it to sign with the server's time once it has measured the difference
/// between the two clocks. Clones share the offset, so a measurement made by one clone of a
/// client corrects every other clone. A second offset, the confirmed one, is what
/// [`Clock::confirmed_now_millis`] adds.
#[cfg(any(feature = "client", feature = "mock", feature = "reqwest"))]
#[derive(Clone, Debug)]
pub(crate) struct OffsetClock<C = SystemClock> {
    base: C,
    offset: Arc<AtomicI64>,
    confirmed: Arc<AtomicI64>,
}

#[cfg(any(feature = "client", feature = "mock", feature = "reqwest"))]
impl<C: Clock> OffsetClock<C> {
    /// Wraps `base` with an offset of zero.
    pub(crate) fn new(base: C) -> Self {
        Self {
            base,
            offset: Arc::new(AtomicI64::new(0)),
            confirmed: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The offset currently applied, in milliseconds (server time minus base time).
    #[cfg(any(feature = "client", feature = "reqwest"))]
    pub(crate) fn offset_millis(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Sets the offset applied by this clock and all its clones.
    pub(crate) fn set_offset_millis(&self, offset: i64) {
        self.offset.store(offset, Ordering::Relaxed);
    }

    /// Sets the confirmed offset, which judges expiry, of this clock and all its clones.
    #[cfg(any(feature = "client", feature = "reqwest"))]
    pub(crate) fn set_confirmed_offset_millis(&self, offset: i64) {
        self.confirmed.store(offset, Ordering::Relaxed);
    }

    /// The uncorrected time of the base clock.
    #[cfg(any(feature = "client", feature = "reqwest"))]
    pub(crate) fn base_millis(&self) -> i64 {
        self.base.now_millis()
    }
}

#[cfg(any(feature = "client", feature = "mock", feature = "reqwest"))]
impl<C: Clock> Clock for OffsetClock<C> {
    #[inline]
    fn now_millis(&self) -> i64 {
        self.base
            .now_millis()
            .saturating_add(self.offset.load(Ordering::Relaxed))
    }

    fn confirmed_now_millis(&self) -> i64 {
        self.base
            .now_millis()
            .saturating_add(self.confirmed.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn system_time_conversion_handles_both_sides_of_the_epoch() {
        assert_eq!(system_time_millis(UNIX_EPOCH), 0);
        assert_eq!(
            system_time_millis(UNIX_EPOCH + Duration::from_millis(1_500)),
            1_500
        );
        assert_eq!(
            system_time_millis(UNIX_EPOCH - Duration::from_millis(2_250)),
            -2_250
        );
    }

    #[test]
    fn system_clock_reads_the_system_time_in_milliseconds() {
        let before = system_time_millis(SystemTime::now());
        let read = SystemClock.now_millis();
        let after = system_time_millis(SystemTime::now());
        assert!(
            before <= read && read <= after,
            "{before} <= {read} <= {after}"
        );
    }

    #[test]
    fn fixed_clock_clones_share_time() {
        let a = FixedClock::new(10);
        let b = a.clone();
        a.advance_millis(5);
        assert_eq!(b.now_millis(), 15);
        b.set_millis(-3);
        assert_eq!(a.now_millis(), -3);
    }

    #[cfg(any(feature = "client", feature = "mock", feature = "reqwest"))]
    #[test]
    fn offset_clock_clones_share_offset_and_saturate() {
        let c = OffsetClock::new(FixedClock::new(i64::MAX - 1));
        let d = c.clone();
        c.set_offset_millis(10);
        assert_eq!(d.offset_millis(), 10);
        assert_eq!(d.now_millis(), i64::MAX);
        assert_eq!(d.base_millis(), i64::MAX - 1);
    }
}
