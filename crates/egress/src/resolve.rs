//! The host's own name resolution (`getaddrinfo`: `/etc/hosts`, then the host's DNS), run on
//! blocking threads and cached briefly, so repeated lookups cost a map access.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is reused; also the TTL the resolver gives its clients.
pub(crate) const ANSWER_TTL: Duration = Duration::from_secs(30);
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
const MAX_ENTRIES: usize = 10_000;

/// A lookup that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name has no address.
    #[error("`{0}` has no address")]
    NoAddress(String),
    /// The lookup itself failed.
    #[error("cannot resolve `{0}`: {1}")]
    Failed(String, String),
}

type Answer = Result<Arc<[IpAddr]>, ResolveError>;

/// The cache in front of `getaddrinfo`.
#[derive(Debug, Default)]
pub struct HostResolver {
    cache: Mutex<HashMap<String, (Instant, Answer)>>,
}

impl HostResolver {
    /// An empty cache.
    pub fn new() -> Self {
        HostResolver::default()
    }

    /// A cached answer for `name`, if fresh.
    pub fn cached(&self, name: &str) -> Option<Answer> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(name).filter(|(expires, _)| *expires > Instant::now()).map(|(_, a)| a.clone())
    }

    /// The addresses of `name` (normalised; an IP literal is its own answer).
    pub async fn lookup(&self, name: &str) -> Answer {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Arc::from([ip]));
        }
        if let Some(answer) = self.cached(name) {
            return answer;
        }
        let owned = name.to_owned();
        let answer = tokio::task::spawn_blocking(move || resolve_now(&owned))
            .await
            .unwrap_or_else(|e| Err(ResolveError::Failed(name.to_owned(), e.to_string())));
        let ttl = if answer.is_ok() { ANSWER_TTL } else { NEGATIVE_TTL };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(name.to_owned(), (Instant::now() + ttl, answer.clone()));
        answer
    }
}

fn resolve_now(name: &str) -> Answer {
    match (name, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let mut ips: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !ips.contains(&a.ip()) {
                    ips.push(a.ip());
                }
            }
            if ips.is_empty() { Err(ResolveError::NoAddress(name.to_owned())) } else { Ok(ips.into()) }
        }
        Err(e) => {
            let text = e.to_string();
            if text.contains("not known") || text.contains("No address") || text.contains("no address") {
                Err(ResolveError::NoAddress(name.to_owned()))
            } else {
                Err(ResolveError::Failed(name.to_owned(), text))
            }
        }
    }
}
