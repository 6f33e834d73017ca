//! Human units in policy files: sizes (`100 MiB`), durations (`2h`, `1h30m`) and rates (`60/min`).

use std::fmt;
use std::time::Duration;

/// A size in bytes, written `100 MiB`, `512KB` or as a plain integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ByteSize(pub u64);

/// How many events a window may hold: `60/min` is 60 per 60 seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rate {
    /// Events allowed per window.
    pub count: u32,
    /// The window length.
    #[serde(with = "duration_secs")]
    pub per: Duration,
}

/// A unit string that could not be read, with the units that would have worked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnitError {
    /// What was wrong, lower-case.
    pub message: String,
    /// What to write instead.
    pub hint: &'static str,
}

const SIZE_HINT: &str = "write a size like `100 MiB`; units: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB";
const DURATION_HINT: &str = "write a duration like `2h`, `30min` or `1h30m`; units: ms, s, min (or m), h, d, w";
const RATE_HINT: &str = "write a rate like `60/min`; units: s, min, h, day";

fn err(message: String, hint: &'static str) -> UnitError {
    UnitError { message, hint }
}

/// Splits `"12.5 MiB"` into its number and its unit (spaces between are allowed).
fn split_number(s: &str) -> (&str, &str) {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

fn parse_number(number: &str) -> Option<f64> {
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    number.replace('_', "").parse::<f64>().ok().filter(|n| n.is_finite())
}

impl ByteSize {
    /// Parses `100 MiB`, `1.5GB`, `4096` (bytes).
    pub fn parse(s: &str) -> Result<Self, UnitError> {
        let (number, unit) = split_number(s);
        let value = parse_number(number).ok_or_else(|| err(format!("`{s}` is not a size"), SIZE_HINT))?;
        let scale: u64 = match unit {
            "" | "B" | "b" => 1,
            "KB" | "kB" | "kb" => 1_000,
            "KiB" | "K" | "k" => 1 << 10,
            "MB" | "mb" => 1_000_000,
            "MiB" | "M" => 1 << 20,
            "GB" | "gb" => 1_000_000_000,
            "GiB" | "G" => 1 << 30,
            "TB" | "tb" => 1_000_000_000_000,
            "TiB" | "T" => 1 << 40,
            other => {
                return Err(err(format!("unknown size unit `{other}` in `{s}`"), SIZE_HINT));
            }
        };
        let bytes = value * scale as f64;
        if bytes.fract() != 0.0 || bytes > u64::MAX as f64 {
            return Err(err(format!("`{s}` is not a whole number of bytes"), SIZE_HINT));
        }
        // INVARIANT: `bytes` is finite, integral and within u64's range, checked above.
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "range checked above")]
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, scale) in UNITS {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{} {name}", self.0 / scale);
            }
        }
        write!(f, "{} B", self.0)
    }
}

fn duration_unit(unit: &str) -> Option<f64> {
    Some(match unit {
        "ms" | "msec" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        _ => return None,
    })
}

/// Parses `2h`, `90s`, `1h30m`, `500ms`, `90d`.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err("the duration is empty".into(), DURATION_HINT));
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let (number, tail) = split_number(rest);
        let value = parse_number(number).ok_or_else(|| err(format!("`{s}` is not a duration"), DURATION_HINT))?;
        let unit_end = tail.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(tail.len());
        let unit = &tail[..unit_end];
        if unit.is_empty() {
            return Err(err(format!("`{s}` needs a unit"), DURATION_HINT));
        }
        let scale = duration_unit(unit)
            .ok_or_else(|| err(format!("unknown duration unit `{unit}` in `{s}`"), DURATION_HINT))?;
        total += value * scale;
        rest = tail[unit_end..].trim_start();
    }
    Duration::try_from_secs_f64(total).map_err(|_| err(format!("`{s}` is out of range"), DURATION_HINT))
}

impl Rate {
    /// Parses `60/min`, `10/s`, `1000/day`.
    pub fn parse(s: &str) -> Result<Self, UnitError> {
        let Some((count, unit)) = s.split_once('/') else {
            return Err(err(format!("`{s}` is not a rate"), RATE_HINT));
        };
        let count: u32 = count
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| err(format!("`{}` is not a whole number of calls", count.trim()), RATE_HINT))?;
        let unit = unit.trim();
        let secs = match unit {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hr" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => {
                return Err(err(format!("unknown rate unit `{unit}` in `{s}`"), RATE_HINT));
            }
        };
        if count == 0 {
            return Err(err(format!("`{s}` allows nothing; use a deny rule instead"), RATE_HINT));
        }
        Ok(Rate { count, per: Duration::from_secs(secs) })
    }
}

mod duration_secs {
    pub(super) fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("100 MiB").unwrap().0, 100 << 20);
        assert_eq!(ByteSize::parse("4GiB").unwrap().0, 4 << 30);
        assert_eq!(ByteSize::parse("1.5 KB").unwrap().0, 1500);
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
        assert!(ByteSize::parse("100 MeB").is_err());
        assert!(ByteSize::parse("lots").is_err());
        assert!(ByteSize::parse("0.5 B").is_err());
        assert_eq!(ByteSize(100 << 20).to_string(), "100 MiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert_eq!(parse_duration("5 s").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("2 fortnights").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn rates() {
        let r = Rate::parse("60/min").unwrap();
        assert_eq!((r.count, r.per), (60, Duration::from_secs(60)));
        let e = Rate::parse("60/fortnight").unwrap_err();
        assert!(e.message.contains("fortnight"), "{e}");
        assert!(Rate::parse("sixty/min").is_err());
        assert!(Rate::parse("0/min").is_err());
        assert!(Rate::parse("60").is_err());
    }
}
