//! The proxy, end to end over real sockets: forwarding, denials, bypass spellings, limits,
//! abuse and identities.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use portcullis_egress::Access;

use super::{egress, exchange, origin, read_response, serve, status};

fn local_policy(port: u16) -> String {
    format!("[network]\nallow = [\"localhost:{port}\"]\nallow_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n")
}

#[test]
fn an_allowed_request_is_forwarded_kept_alive_and_recorded() {
    let o = origin();
    let (eg, records) = egress(&local_policy(o.port()), Access::default(), None, false);
    let p = serve(&eg);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..2 {
        // A client's own Host names another site: the URL's authority is what the origin sees.
        let req = format!("GET http://localhost:{}/x?y={i} HTTP/1.1\r\nHost: evil.test\r\n\r\n", o.port());
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s);
        assert_eq!(status(&r), 200, "{r}");
        assert!(r.ends_with(&format!("got GET /x?y={i} 0")), "{r}");
    }
    let body = "0123456789";
    let req = format!("POST http://localhost:{}/up HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", o.port(), body.len());
    s.write_all(req.as_bytes()).unwrap();
    assert!(read_response(&mut s).ends_with("got POST /up 10"));
    drop(s);
    let recs = records.wait("connect", 3);
    assert_eq!(recs.len(), 3, "{recs:?}");
    let r = &recs[0];
    assert_eq!(
        (r["via"].as_str(), r["host"].as_str(), r["method"].as_str()),
        (Some("http"), Some("localhost"), Some("GET"))
    );
    assert_eq!(
        (r["path"].as_str(), r["decision"].as_str(), r["status"].as_u64()),
        (Some("/x?y=0"), Some("allow"), Some(200))
    );
    assert!(r["bytes_up"].as_u64().unwrap() > 30 && r["bytes_down"].as_u64().unwrap() > 30, "{r:?}");
    assert!(r.get("rule").is_none() && r["duration_ms"].is_u64());
    assert!(recs[2]["bytes_up"].as_u64().unwrap() >= 10 + 40, "the body is counted: {:?}", recs[2]);
    assert_eq!(eg.meter().destinations()[0].1.allowed, 3);
}

#[test]
fn a_denial_is_a_403_naming_the_rule_and_how_to_allow() {
    let (eg, records) = egress("[network]\nallow = [\"allowed.test:443\"]\n", Access::default(), None, false);
    let p = serve(&eg);
    let r = exchange(p.addr, b"GET http://denied.test/secret HTTP/1.1\r\n\r\n");
    assert_eq!(status(&r), 403, "{r}");
    let header = r.lines().find(|l| l.to_ascii_lowercase().starts_with("x-portcullis-denied:")).unwrap_or_default();
    assert!(header.contains("default.network") && header.contains("denied.test:80"), "{header}");
    let body: serde_json::Value = serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["destination"], "denied.test:80");
    assert!(body["how_to_allow"].as_str().unwrap().contains("[network] allow"), "{body}");
    let r = exchange(p.addr, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n");
    assert_eq!(status(&r), 403, "{r}");
    let recs = records.wait("connect", 2);
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r["decision"] == "deny" && r["rule"].as_str().unwrap().starts_with("default.network")));
    assert!(recs.iter().any(|r| r["via"] == "http" && r["path"] == "/secret"), "{recs:?}");
}

#[test]
fn every_ssrf_bypass_url_of_the_corpus_is_denied() {
    // The policy allows one ordinary destination; the corpus's internal targets must all fail.
    let (eg, _) =
        egress("[network]\nallow = [\"allowed.test:80\", \"allowed.test:443\"]\n", Access::default(), None, false);
    let p = serve(&eg);
    let mut n = 0;
    for line in include_str!("../../../guard/tests/data/ssrf/ssrf_bypass_urls.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let payload = v["payload"].as_str().unwrap();
        let url = payload.strip_prefix("ssrf.php?url=").unwrap_or(payload);
        // As a proxied request, and (for URLs with a host) as a tunnel to the same place.
        let r = exchange(p.addr, format!("GET {url} HTTP/1.1\r\n\r\n").as_bytes());
        assert!(matches!(status(&r), 400 | 403), "{url} got through: {r}");
        if let Ok(u) = url::Url::parse(url)
            && let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default())
        {
            let r = exchange(p.addr, format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n").as_bytes());
            assert!(matches!(status(&r), 400 | 403), "CONNECT {host}:{port} got through: {r}");
        }
        n += 1;
    }
    assert!(n >= 60, "{n}");
}

#[test]
fn spellings_get_the_decision_of_their_canonical_host() {
    let o = origin();
    let port = o.port();
    let (eg, _) = egress(&local_policy(port), Access::default(), None, false);
    let p = serve(&eg);
    let get = |url: &str| status(&exchange(p.addr, format!("GET {url} HTTP/1.1\r\n\r\n").as_bytes()));
    let pairs = [
        // userinfo: the host is after the @.
        (format!("http://localhost:{port}@evil.test:{port}/"), format!("http://evil.test:{port}/")),
        (format!("http://evil.test:{port}@localhost:{port}/"), format!("http://localhost:{port}/")),
        // A backslash is a slash in http URLs: the host ends before it.
        (format!("http://evil.test:{port}\\@localhost:{port}/"), format!("http://evil.test:{port}/")),
        // Percent-encoded host bytes are decoded.
        (format!("http://localhost%2eevil.test:{port}/"), format!("http://localhost.evil.test:{port}/")),
        (format!("http://loc%61lhost:{port}/"), format!("http://localhost:{port}/")),
        (format!("http://LOCALHOST.:{port}/"), format!("http://localhost:{port}/")),
    ];
    for (spelled, canonical) in &pairs {
        assert_eq!(get(spelled), get(canonical), "{spelled} vs {canonical}");
    }
    assert_eq!(get(&pairs[1].1), 200, "the allowed canonical host is reachable");
    assert_eq!(get(&pairs[0].1), 403);
}

#[test]
fn a_name_resolving_into_a_special_range_is_denied_unless_listed() {
    let o = origin();
    let (eg, records) =
        egress(&format!("[network]\nallow = [\"localhost:{}\"]\n", o.port()), Access::default(), None, false);
    let p = serve(&eg);
    let r = exchange(p.addr, format!("GET http://localhost:{}/ HTTP/1.1\r\n\r\n", o.port()).as_bytes());
    assert_eq!(status(&r), 403, "{r}");
    assert!(r.contains("allow_cidrs"), "{r}");
    assert_eq!(records.wait("connect", 1)[0]["rule"], "builtin special ranges");
}

#[test]
fn huge_heads_get_431_and_the_proxy_goes_on() {
    let o = origin();
    let (eg, _) = egress(&local_policy(o.port()), Access::default(), None, false);
    let p = serve(&eg);
    let big = format!("GET http://localhost:{}/ HTTP/1.1\r\nX: {}\r\n\r\n", o.port(), "a".repeat(1 << 20));
    assert_eq!(status(&exchange(p.addr, big.as_bytes())), 431);
    let many: String = (0..10_000).map(|i| format!("X-{i}: v\r\n")).collect();
    let r = exchange(p.addr, format!("GET http://localhost:{}/ HTTP/1.1\r\n{many}\r\n", o.port()).as_bytes());
    assert!(matches!(status(&r), 431 | 400), "{}", &r[..r.len().min(200)]);
    let ok = exchange(p.addr, format!("GET http://localhost:{}/ HTTP/1.1\r\n\r\n", o.port()).as_bytes());
    assert_eq!(status(&ok), 200);
}

#[test]
fn five_hundred_slow_header_clients_do_not_stall_others_and_are_cut_off() {
    let o = origin();
    let (eg, _) = egress(&local_policy(o.port()), Access::default(), None, false);
    let p = serve(&eg);
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(p.addr).unwrap();
            s.write_all(b"GET http://localhost/ HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let r = exchange(p.addr, format!("GET http://localhost:{}/ HTTP/1.1\r\n\r\n", o.port()).as_bytes());
    assert_eq!(status(&r), 200);
    assert!(started.elapsed() < Duration::from_secs(2), "a normal client waited {:?}", started.elapsed());
    // Past the head timeout (2 s here) every slow client has been answered 408 and closed.
    std::thread::sleep(Duration::from_millis(2500));
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n == 0 || buf.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn the_outbound_ceiling_cuts_an_upload_and_denies_what_follows() {
    let o = origin();
    let ceiling = 1u64 << 20;
    let (eg, records) = egress(&local_policy(o.port()), Access::default(), Some(ceiling), false);
    let p = serve(&eg);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let size = 5usize << 20;
    s.write_all(format!("PUT http://localhost:{}/big HTTP/1.1\r\nContent-Length: {size}\r\n\r\n", o.port()).as_bytes())
        .unwrap();
    // The proxy stops reading once the ceiling is reached; the rest may not be accepted.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..(size / chunk.len()) {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let r = read_response(&mut s);
    assert!(r.is_empty() || status(&r) == 403, "{r}");
    assert!(eg.meter().outbound() <= ceiling + 64 * 1024, "{}", eg.meter().outbound());
    assert!(eg.meter().exhausted());
    let after = exchange(p.addr, format!("GET http://localhost:{}/ HTTP/1.1\r\n\r\n", o.port()).as_bytes());
    assert_eq!(status(&after), 403);
    assert!(after.contains("outbound_bytes"), "{after}");
    assert_eq!(records.of("egress_warning").len(), 1, "one warning at 80%");
    assert!(records.wait("connect", 2).iter().any(|r| r["rule"] == "network.outbound_bytes"));
}

#[test]
fn connect_and_socks5_tunnels_reach_allowed_destinations_only() {
    let o = origin();
    let (eg, records) = egress(&local_policy(o.port()), Access::default(), None, false);
    let p = serve(&eg);
    // CONNECT, then HTTP inside the tunnel.
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("CONNECT localhost:{} HTTP/1.1\r\n\r\nGET /in HTTP/1.1\r\n\r\n", o.port()).as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("got GET /in") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 Connection established"));
    drop(s);
    // SOCKS5 with a domain name.
    let socks = |host: &str, port: u16| -> (u8, Option<TcpStream>) {
        let mut s = TcpStream::connect(p.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&[5, 1, 0]).unwrap();
        let mut reply = [0u8; 2];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [5, 0]);
        let mut req = vec![5, 1, 0, 3, host.len() as u8];
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).unwrap();
        let mut r = [0u8; 10];
        s.read_exact(&mut r).unwrap();
        (r[1], (r[1] == 0).then_some(s))
    };
    let (code, stream) = socks("localhost", o.port());
    assert_eq!(code, 0);
    let mut s = stream.unwrap();
    s.write_all(b"GET /socks HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_response(&mut s).ends_with("got GET /socks 0"));
    drop(s);
    assert_eq!(socks("denied.test", 80).0, 2, "connection not allowed by ruleset");
    let recs = records.wait("connect", 5);
    let opened = recs.iter().filter(|r| r["phase"] == "open").count();
    assert_eq!(opened, 2, "each allowed tunnel is recorded when it opens: {recs:?}");
    let mut vias: Vec<(String, String)> = recs
        .iter()
        .filter(|r| r["phase"] != "open")
        .map(|r| (r["via"].as_str().unwrap().to_owned(), r["decision"].as_str().unwrap().to_owned()))
        .collect();
    // Tunnels end in no fixed order.
    vias.sort();
    assert_eq!(
        vias,
        [("connect".into(), "allow".into()), ("socks5".into(), "allow".into()), ("socks5".into(), "deny".into())]
    );
}

#[test]
fn proxy_credentials_carry_the_agent_and_tool() {
    let o = origin();
    let port = o.port();
    let text = format!(
        "[network]\nallow = []\nallow_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n[agents.ci]\nnetwork.allow = [\"localhost:{port}\"]\n"
    );
    let basic = |user: &str, pass: &str| {
        let raw = format!("{user}:{pass}");
        format!("Proxy-Authorization: Basic {}\r\n", b64(raw.as_bytes()))
    };
    let access = Access { agent: None, agent_locked: false, password: Some("s3cret".into()) };
    let (eg, records) = egress(&text, access, None, false);
    let p = serve(&eg);
    let get = |auth: &str| {
        status(&exchange(p.addr, format!("GET http://localhost:{port}/ HTTP/1.1\r\n{auth}\r\n").as_bytes()))
    };
    assert_eq!(get(""), 407, "credentials are required");
    assert_eq!(get(&basic("ci/WebFetch", "wrong")), 407);
    assert_eq!(get(&basic("/WebFetch", "s3cret")), 403, "the top level allows nothing");
    assert_eq!(get(&basic("ci/WebFetch", "s3cret")), 200, "agent ci's profile allows it");
    assert_eq!(get(&basic("nobody", "s3cret")), 403, "an unknown agent");
    let recs = records.wait("connect", 3);
    let last = recs.iter().find(|r| r["decision"] == "allow").unwrap();
    assert_eq!((last["agent"].as_str(), last["tool"].as_str()), (Some("ci"), Some("WebFetch")));
    // A session's proxy acts for its own agent only.
    let locked = Access { agent: Some("ci".into()), agent_locked: true, password: None };
    let (eg, _) = egress(&text, locked, None, false);
    let p = serve(&eg);
    let get = |auth: &str| {
        status(&exchange(p.addr, format!("GET http://localhost:{port}/ HTTP/1.1\r\n{auth}\r\n").as_bytes()))
    };
    assert_eq!(get(""), 200);
    assert_eq!(get(&basic("/Bash", "")), 200);
    assert_eq!(get(&basic("other", "")), 403);
}

fn b64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_thousand_concurrent_tunnels_complete_and_release_their_descriptors() {
    let o = origin();
    let (eg, _) = egress(&local_policy(o.port()), Access::default(), None, false);
    let p = serve(&eg);
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap()))
            .unwrap()
    };
    // Warm the runtime and the resolver's cache.
    assert_eq!(
        status(&exchange(p.addr, format!("GET http://localhost:{}/ HTTP/1.1\r\n\r\n", o.port()).as_bytes())),
        200
    );
    std::thread::sleep(Duration::from_millis(200));
    let (fds_before, rss_before) = (fds(), rss());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (proxy, port) = (p.addr, o.port());
    let done = rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(1000));
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(proxy).await.ok()?;
                    let req = format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\nGET /t{i} HTTP/1.1\r\n\r\n");
                    s.write_all(req.as_bytes()).await.ok()?;
                    let want = format!("got GET /t{i} 0");
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !String::from_utf8_lossy(&got).contains(&want) {
                        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await.ok()?.ok()?;
                        if n == 0 {
                            return None;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    // All thousand are open at once before any closes.
                    barrier.wait().await;
                    Some(())
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            if let Ok(Some(())) = t.await {
                ok += 1;
            }
        }
        ok
    });
    drop(rt);
    assert_eq!(done, 1000);
    // Descriptors back to where they were (the origin's threads close theirs too).
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds() > fds_before + 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(fds() <= fds_before + 4, "{} descriptors open, {fds_before} before", fds());
    let grown = rss().saturating_sub(rss_before);
    assert!(grown < 256 * 1024, "memory grew by {grown} kB");
}

// An allowed `CONNECT` tunnel was recorded only when it closed: a long exfiltration had no
// record while it ran, and none at all if the supervisor was killed. It is recorded when it
// opens, then every 10 MiB (or minute), then at its close with the totals.
#[test]
fn a_tunnel_is_on_the_record_while_it_runs() {
    let o = origin();
    let (eg, records) = egress(&local_policy(o.port()), Access::default(), None, false);
    let p = serve(&eg);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("CONNECT localhost:{} HTTP/1.1\r\n\r\n", o.port()).as_bytes()).unwrap();
    let mut head = [0u8; 39];
    s.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    let open = records.wait("connect", 1);
    assert_eq!(open.len(), 1, "recorded before anything moved: {open:?}");
    assert_eq!((open[0]["phase"].as_str(), open[0]["decision"].as_str()), (Some("open"), Some("allow")));
    // 12 MiB up, twice, through the tunnel, which stays open: a progress record each time.
    let body = vec![b'x'; 12 << 20];
    let mut progress = Vec::new();
    for round in 1..=2 {
        s.write_all(format!("POST /up HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        assert!(read_response(&mut s).ends_with(&format!("got POST /up {}", body.len())));
        let deadline = Instant::now() + Duration::from_secs(5);
        progress = loop {
            let p: Vec<_> = records.of("connect").into_iter().filter(|r| r["phase"] == "progress").collect();
            if p.len() >= round || Instant::now() > deadline {
                break p;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(progress.len(), round, "a progress record every 10 MiB: {progress:?}");
        assert!(progress[round - 1]["bytes_up"].as_u64().unwrap() >= (12 << 20) * round as u64, "{progress:?}");
    }
    assert!(records.of("connect").iter().all(|r| r["phase"] != "close"), "still open");
    drop(s);
    let all = records.wait("connect", progress.len() + 2);
    let close = all.iter().find(|r| r["phase"] == "close").expect("a record at the close");
    assert!(close["bytes_up"].as_u64().unwrap() >= 24 << 20, "{close:?}");
}
