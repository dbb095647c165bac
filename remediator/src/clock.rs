//! Time as the remediator stores it (seconds since the Unix epoch, as `f64`) and as
//! Alertmanager writes it (RFC 3339).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
#[must_use]
pub fn now() -> f64 {
    stackmedic_common::reload::unix_now()
}

/// `t` as RFC 3339 in UTC, to the second: `2026-11-22T10:00:00Z`.
#[must_use]
pub fn rfc3339(t: f64) -> String {
    humantime::format_rfc3339_seconds(system_time(t)).to_string()
}

/// `t` as RFC 3339 in UTC, to the millisecond, as posted to Alertmanager.
#[must_use]
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn system_time(t: f64) -> SystemTime {
    if t.is_finite() && t > 0.0 {
        UNIX_EPOCH + Duration::from_secs_f64(t)
    } else {
        UNIX_EPOCH
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time as Alertmanager and Prometheus write it
/// (`2026-11-22T10:00:04.123456789Z`, `2026-11-22T11:00:04+01:00`); `None` when it is not one,
/// or is Go's zero time.
#[must_use]
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let s = text.trim();
    let (date, rest) = s.split_once(['T', 't'])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if year < 1970 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (c, o) = rest.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o.get(1..)?.split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let mut t = clock.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: f64 = t.next()?.parse().ok()?;
    // Days from 1970-01-01 of a proleptic Gregorian date, by the era arithmetic of
    // "days from civil".
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 - offset) as f64 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_alertmanager_writes() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:04.5Z"),
            Some(1_795_341_604.5)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T11:00:04.5+01:00"),
            Some(1_795_341_604.5)
        );
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339(""), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(rfc3339(1_795_341_604.5), "2026-11-22T10:00:04Z");
    }
}
