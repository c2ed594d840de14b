//! Dates, through crates already in the tree: HTTP's IMF-fixdate by
//! `httpdate` (`Date`, cookies' `Expires`), and days since 1970-01-01 to and
//! from calendar dates by `time` (connect-redis records' `cookie.expires`,
//! certificate expiry).

use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use httpdate::HttpDate;
use time::{Date, Month};

/// 1970-01-01 as a Julian day.
const EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// 10000-01-01, in seconds since 1970: `httpdate` panics from there on.
const YEAR_10000: u64 = 253_402_300_800;

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 5.6.7);
/// `None` from the year 10000 on.
pub fn imf_fixdate(since_epoch: Duration) -> Option<[u8; 29]> {
    if since_epoch.as_secs() >= YEAR_10000 {
        return None;
    }
    let mut text = [0u8; 29];
    write!(
        &mut text[..],
        "{}",
        HttpDate::from(UNIX_EPOCH + since_epoch)
    )
    .ok()?;
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
}
