//! Byte meters: the session's outbound ceiling and the totals per destination.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes and requests to one destination (`host:port`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestinationTotals {
    /// Client-to-upstream bytes, request heads included.
    pub up: u64,
    /// Upstream-to-client bytes.
    pub down: u64,
    /// Requests and tunnels let through.
    pub allowed: u64,
    /// Requests and tunnels refused.
    pub denied: u64,
}

/// What a reservation of outbound bytes found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// Within the ceiling.
    Ok,
    /// Within the ceiling, and past 80% of it for the first time.
    Warn,
    /// These bytes would cross the ceiling: they must not be sent.
    Exceeded,
}

/// The session's meters.
#[derive(Debug)]
pub struct Meter {
    ceiling: Option<u64>,
    up: AtomicU64,
    down: AtomicU64,
    warned: AtomicBool,
    crossed: AtomicBool,
    destinations: Mutex<BTreeMap<String, DestinationTotals>>,
}

impl Meter {
    /// Meters with an outbound ceiling.
    pub fn new(ceiling: Option<u64>) -> Self {
        Meter {
            ceiling,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            crossed: AtomicBool::new(false),
            destinations: Mutex::new(BTreeMap::new()),
        }
    }

    /// The ceiling.
    pub fn ceiling(&self) -> Option<u64> {
        self.ceiling
    }

    /// Takes `n` outbound bytes from the allowance before they are sent. Bytes that would cross
    /// the ceiling are not taken, and from then on the ceiling counts as reached.
    pub fn reserve(&self, n: u64) -> Outbound {
        let Some(ceiling) = self.ceiling else {
            self.up.fetch_add(n, Ordering::Relaxed);
            return Outbound::Ok;
        };
        let mut current = self.up.load(Ordering::Relaxed);
        loop {
            if self.crossed.load(Ordering::Relaxed) || current.saturating_add(n) > ceiling {
                self.crossed.store(true, Ordering::Relaxed);
                return Outbound::Exceeded;
            }
            match self.up.compare_exchange_weak(current, current + n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        let after = current + n;
        if after.saturating_mul(5) >= ceiling.saturating_mul(4) && !self.warned.swap(true, Ordering::Relaxed) {
            return Outbound::Warn;
        }
        Outbound::Ok
    }

    /// Counts `n` bytes from upstreams to clients.
    pub fn add_down(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
    }

    /// True once the ceiling was reached: new connections are refused.
    pub fn exhausted(&self) -> bool {
        self.crossed.load(Ordering::Relaxed)
    }

    /// Client-to-upstream bytes so far.
    pub fn outbound(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    /// Upstream-to-client bytes so far.
    pub fn inbound(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }

    /// Adds a finished request or tunnel to its destination's totals.
    pub(crate) fn finish(&self, destination: &str, up: u64, down: u64, allowed: bool) {
        let mut map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a client cycling through names cannot grow this without end.
        let key = if map.len() >= 10_000 && !map.contains_key(destination) { "(other)" } else { destination };
        let t = map.entry(key.to_owned()).or_default();
        t.up += up;
        t.down += down;
        if allowed {
            t.allowed += 1;
        } else {
            t.denied += 1;
        }
    }

    /// The totals per destination, by name.
    pub fn destinations(&self) -> Vec<(String, DestinationTotals)> {
        let map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_never_crossed_and_warns_once() {
        let m = Meter::new(Some(1000));
        assert_eq!(m.reserve(700), Outbound::Ok);
        assert_eq!(m.reserve(150), Outbound::Warn);
        assert_eq!(m.reserve(100), Outbound::Ok);
        assert_eq!(m.reserve(100), Outbound::Exceeded);
        assert_eq!(m.reserve(1), Outbound::Exceeded, "reached stays reached");
        assert_eq!(m.outbound(), 950);
        assert!(m.exhausted());
    }
}
