//! Dates, through crates already in the tree: HTTP's IMF-fixdate by
//! `httpdate` (`Date`, cookies' `Expires`), and days since 1970-01-01 to and
//! from calendar dates by `time` (connect-redis records' `cookie.expires`,
//! certificate expiry).

use std::cell::Cell;
use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use httpdate::HttpDate;
use time::{Date, Month};

/// 1970-01-01 as a Julian day.
const EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// 10000-01-01, in seconds since 1970: `httpdate` panics from there on.
const YEAR_10000: u64 = 253_402_300_800;

/// An IMF-fixdate's text: always 29 bytes.
type FixDate = [u8; 29];

/// The dates this thread formatted last, by second since 1970: a session
/// write's cookie `Expires` and a response's `Date` stay the same for a
/// second, and formatting one costs more than the rest of the cookie.
#[derive(Clone, Copy)]
struct Recent {
    slots: [Option<(u64, FixDate)>; 2],
    /// The slot the next miss overwrites.
    next: usize,
}

thread_local! {
    static RECENT: Cell<Recent> = const {
        Cell::new(Recent { slots: [None; 2], next: 0 })
    };
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 5.6.7);
/// `None` from the year 10000 on.
pub fn imf_fixdate(since_epoch: Duration) -> Option<FixDate> {
    let seconds = since_epoch.as_secs();
    if seconds >= YEAR_10000 {
        return None;
    }
    let mut recent = RECENT.get();
    let known = recent.slots.iter().flatten().find(|(at, _)| *at == seconds);
    if let Some((_, text)) = known {
        return Some(*text);
    }
    let mut text = [0u8; 29];
    write!(
        &mut text[..],
        "{}",
        HttpDate::from(UNIX_EPOCH + Duration::from_secs(seconds))
    )
    .ok()?;
    recent.slots[recent.next] = Some((seconds, text));
    recent.next = (recent.next + 1) % recent.slots.len();
    RECENT.set(recent);
    Some(text)
}

/// Days since 1970-01-01 to (year, month, day); `None` outside the years
/// −9999 to 9999.
pub fn civil_from_days(days: i64) -> Option<(i64, i64, i64)> {
    let julian = i32::try_from(days.checked_add(EPOCH_JULIAN_DAY)?).ok()?;
    let (year, month, day) = Date::from_julian_day(julian).ok()?.to_calendar_date();
    Some((i64::from(year), i64::from(u8::from(month)), i64::from(day)))
}

/// (year, month, day) to days since 1970-01-01; `None` for a date that
/// does not exist (February 30th) or is out of range.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    Some(i64::from(date.to_julian_day()) - EPOCH_JULIAN_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_across_eras_and_leap_days() {
        for days in [-719_468, -1, 0, 59, 11_016, 20_414, 2_932_896] {
            let (y, m, d) = civil_from_days(days).unwrap();
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), Some((1970, 1, 1)));
        assert_eq!(
            days_from_civil(2024, 2, 29).and_then(civil_from_days),
            Some((2024, 2, 29))
        );
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2023, 13, 1), None);
    }

    #[test]
    fn http_dates_are_imf_fixdates() {
        let date = imf_fixdate(Duration::from_secs(784_111_777)).unwrap();
        assert_eq!(&date, b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(imf_fixdate(Duration::from_secs(YEAR_10000)), None);
        assert!(imf_fixdate(Duration::from_secs(YEAR_10000 - 1)).is_some());
    }

    #[test]
    fn remembered_dates_are_the_dates_of_their_own_second() {
        let base = 1_796_000_000; // 2026-11-30T00:53:20Z
        let fresh = |seconds: u64| {
            let mut text = [0u8; 29];
            let date = HttpDate::from(UNIX_EPOCH + Duration::from_secs(seconds));
            write!(&mut text[..], "{date}").unwrap();
            text
        };
        // Three seconds in turn through two slots, each asked twice, and a
        // fraction of a second that must not change the answer.
        for seconds in [base, base + 86_400, base + 1, base, base + 86_400, base + 1] {
            assert_eq!(
                imf_fixdate(Duration::from_secs(seconds)),
                Some(fresh(seconds))
            );
            let later = Duration::from_secs(seconds) + Duration::from_millis(999);
            assert_eq!(imf_fixdate(later), Some(fresh(seconds)));
        }
        assert_eq!(imf_fixdate(Duration::from_secs(YEAR_10000)), None);
    }
}
