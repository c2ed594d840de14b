//! Units in configuration values: durations written as `250ms`, `10s`,
//! `5m`, `2h`, `1d`.

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
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(help()),
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(help)
}

#[cfg(test)]
mod tests {
    use super::*;

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
