//! Proleptic Gregorian dates from and to days since 1970-01-01 (Howard
//! Hinnant's algorithms), for the few places that print or parse UTC dates
//! themselves: connect-redis records' `cookie.expires`, certificate expiry,
//! cookies' `Expires` and the `Date` of responses. Pure integer arithmetic,
//! no time-zone data.

use std::time::Duration;

/// Days since 1970-01-01 to (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 5.6.7), the
/// form of HTTP's `Date` and of cookies' `Expires`; `None` past the year
/// 9999. Digits are placed by hand: `format!` with padding costs more than
/// the rest of a cookie.
pub fn imf_fixdate(since_epoch: Duration) -> Option<[u8; 29]> {
    const WEEKDAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let Ok(seconds) = i64::try_from(since_epoch.as_secs()) else {
        return None;
    };
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let (Ok(year), Ok(month), Ok(weekday)) = (
        u16::try_from(year),
        usize::try_from(month - 1),
        usize::try_from(days.rem_euclid(7)),
    ) else {
        return None;
    };
    if year > 9999 || month > 11 {
        return None;
    }
    let digit = |n: i64| b'0' + (n % 10) as u8;
    let year = i64::from(year);
    let mut text = *b"Www, DD Mmm YYYY HH:MM:SS GMT";
    text[..3].copy_from_slice(WEEKDAYS[weekday]);
    text[5] = digit(day / 10);
    text[6] = digit(day);
    text[8..11].copy_from_slice(MONTHS[month]);
    text[12] = digit(year / 1000);
    text[13] = digit(year / 100);
    text[14] = digit(year / 10);
    text[15] = digit(year);
    text[17] = digit(of_day / 36_000);
    text[18] = digit(of_day / 3600);
    text[20] = digit(of_day / 600 % 6);
    text[21] = digit(of_day / 60);
    text[23] = digit(of_day % 60 / 10);
    text[24] = digit(of_day % 60);
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_across_eras_and_leap_days() {
        for days in [-719_468, -1, 0, 59, 11_016, 20_414, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
