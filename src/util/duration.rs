//! Durations as people write them, in configuration values and in
//! `Set-Session: remember=30d`: `250ms`, `10s`, `5m`, `2h`, `1d`.

use std::time::Duration;

/// Parses a duration; the error says how to write one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let help = || {
        format!("`{text}` is not a duration; write a whole number and a unit: \"250ms\", \"10s\", \"5m\", \"2h\", \"1d\"")
    };
    let number: u64 = number.parse().map_err(|_| help())?;
    let seconds_per_unit = match unit {
        "ms" => return check_limit(text, Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(help()),
    };
    let duration = number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(help)?;
    check_limit(text, duration)
}

/// The longest duration accepted: a deadline this far ahead is still an
/// `Instant` the clock can represent, so no timer or expiry computed from a
/// configured duration can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

fn check_limit(text: &str, duration: Duration) -> Result<Duration, String> {
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than 100 years; use at most \"36500d\""
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_over_a_hundred_years_are_refused() {
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        for text in ["36501d", "9999999999999d", "18446744073709551615ms"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("longer than 100 years"), "{text}: {error}");
        }
    }

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn refuses_bare_numbers_and_unknown_units() {
        for bad in ["10", "s", "1.5s", "10 seconds", "-1s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
