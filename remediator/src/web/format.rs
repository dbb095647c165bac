//! Times and durations on the page, in UTC and for a person.

use std::time::Duration;

use crate::clock::rfc3339;

/// An absolute time, or nothing.
pub(super) fn time(t: Option<f64>) -> String {
    match t {
        Some(t) if t > 0.0 => rfc3339(t),
        _ => String::new(),
    }
}

/// `t` relative to `now`, for a person: `12 s ago`, `in 3 min`, `now`.
pub(super) fn relative(t: f64, now: f64) -> String {
    let d = t - now;
    let a = d.abs();
    if a < 1.0 {
        return "now".into();
    }
    let amount = if a < 60.0 {
        format!("{:.0} s", a.floor())
    } else if a < 3600.0 {
        format!("{:.0} min", (a / 60.0).floor())
    } else if a < 86_400.0 {
        format!(
            "{:.0} h {:.0} min",
            (a / 3600.0).floor(),
            ((a % 3600.0) / 60.0).floor()
        )
    } else {
        format!(
            "{:.0} d {:.0} h",
            (a / 86_400.0).floor(),
            ((a % 86_400.0) / 3600.0).floor()
        )
    };
    if d < 0.0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// An absolute time with its distance from `now`, as HTML:
/// `2026-11-22T10:00:00Z (3 min ago)`.
pub(super) fn when(t: Option<f64>, now: f64) -> String {
    match t {
        Some(t) if t > 0.0 => format!(
            "<span class=\"t\">{} <span class=\"m\">({})</span></span>",
            rfc3339(t),
            relative(t, now)
        ),
        _ => String::new(),
    }
}

/// A window in seconds as a duration: `1h`, `30m`.
pub(super) fn window(seconds: f64) -> String {
    if !seconds.is_finite() || seconds <= 0.0 {
        return "0s".into();
    }
    humantime::format_duration(Duration::from_secs(seconds.round() as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(NOW, NOW), "now");
        assert_eq!(relative(NOW - 12.4, NOW), "12 s ago");
        assert_eq!(relative(NOW + 150.0, NOW), "in 2 min");
        assert_eq!(relative(NOW - 3.0 * 86_400.0 - 7200.0, NOW), "3 d 2 h ago");
        assert_eq!(window(3600.0), "1h");
        assert_eq!(time(None), "");
    }
}
