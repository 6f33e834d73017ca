mod proxy;
mod smuggling;
mod tunnels;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_egress::{Access, DnsOptions, Egress, Options, PolicyGate, Recorder, Timeouts};
use portcullis_policy::{Environment, Policy};
use serde_json::{Map, Value};

/// Records kept in memory.
#[derive(Default)]
pub(crate) struct Records(pub(crate) Mutex<Vec<(String, Map<String, Value>)>>);

impl Recorder for Records {
    fn record(&self, kind: &str, fields: Map<String, Value>) -> bool {
        self.0.lock().unwrap().push((kind.to_owned(), fields));
        true
    }
}

impl Records {
    /// The records of `kind` once there are at least `n` (they are written after the client
    /// has its answer), waiting up to five seconds.
    pub(crate) fn wait(&self, kind: &str, n: usize) -> Vec<Map<String, Value>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let found = self.of(kind);
            if found.len() >= n || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn of(&self, kind: &str) -> Vec<Map<String, Value>> {
        self.0.lock().unwrap().iter().filter(|(k, _)| k == kind).map(|(_, f)| f.clone()).collect()
    }
}

pub(crate) fn policy(text: &str) -> Arc<Policy> {
    let env = Environment::new("/tmp", "/root").unwrap();
    Arc::new(Policy::load(text, "test.toml", &env).unwrap_or_else(|e| panic!("{e}")))
}

/// An egress for `policy_text`, with its records.
pub(crate) fn egress(
    policy_text: &str,
    access: Access,
    ceiling: Option<u64>,
    strict: bool,
) -> (Arc<Egress>, Arc<Records>) {
    let records = Arc::new(Records::default());
    let options = Options {
        access,
        ceiling,
        dns: DnsOptions { strict, max_label_length: 40, max_label_entropy: 4.0, max_unique_subdomains: 64 },
        timeouts: Timeouts {
            head: Duration::from_secs(2),
            connect: Duration::from_secs(2),
            idle: Duration::from_secs(10),
        },
    };
    (Egress::new(Arc::new(PolicyGate::new(policy(policy_text))), records.clone(), options), records)
}

/// A proxy serving `egress` on a fresh loopback port, on its own runtime.
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

pub(crate) fn serve(eg: &Arc<Egress>) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(eg.clone().serve_proxy(listener));
    Served { addr, _runtime: runtime }
}

/// A minimal HTTP/1.1 origin on a fresh loopback port: answers every request with
/// `got METHOD PATH BODYLEN`, keeping connections alive; bodies by Content-Length.
pub(crate) fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_origin(stream));
        }
    });
    addr
}

fn serve_origin(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut first = head.lines().next().unwrap_or_default().split(' ');
        let (method, path) = (first.next().unwrap_or_default().to_owned(), first.next().unwrap_or_default().to_owned());
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        buf.drain(..end);
        while buf.len() < len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..len);
        let body = format!("got {method} {path} {len}");
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        if s.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Sends raw `request` bytes to the proxy and reads until the connection closes or a whole
/// response with Content-Length has arrived; returns the response text.
pub(crate) fn exchange(proxy: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    read_response(&mut s)
}

pub(crate) fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(p) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..p]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
            if len.is_some_and(|len| out.len() >= p + 4 + len) {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn status(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}
