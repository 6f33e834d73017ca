//! Request smuggling through the proxy, against a real upstream that would answer a smuggled
//! request: python's `http.server`, keeping connections alive, which never reads a request body
//! (so a body is read as the next request) and ignores `Transfer-Encoding`. Each family is one
//! attack: the smuggled `GET /smuggled` (for `Host: secret.internal`, which the policy denies)
//! must never reach the upstream through an ambiguity of framing, and its answer must never
//! come back to the client.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_egress::Access;

use super::{egress, read_response, serve, status};

const UPSTREAM: &str = r#"
import http.server, sys
log = open(sys.argv[1], 'a', buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass
    def answer(self):
        log.write('%s %s %s\n' % (self.command, self.path, self.headers.get('Host')))
        body = ('answer to ' + self.path).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_HEAD = answer
srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// The upstream, killed when dropped; its log of the requests it parsed.
struct Upstream {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Upstream {
    fn start() -> Upstream {
        let log = std::env::temp_dir().join(format!("portcullis-smuggling-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", UPSTREAM])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Ready once it prints its port.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        Upstream { child, port: line.trim().parse().unwrap(), log }
    }

    fn seen(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn smuggled_requests_never_reach_the_upstream_nor_answer_the_client() {
    let up = Upstream::start();
    let port = up.port;
    let policy = format!("[network]\nallow = [\"localhost:{port}\"]\nallow_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n");
    let (eg, _) = egress(&policy, Access::default(), None, false);
    let p = serve(&eg);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: secret.internal\r\n\r\n";
    let chunked = format!("0\r\n\r\n{smuggled}");
    let url = format!("http://localhost:{port}");
    let n = smuggled.len();
    // (the family, the request) — every one must be refused with 400.
    let refused: Vec<(&str, String)> = vec![
        (
            "Connection names Content-Length",
            format!(
                "POST {url}/innocent HTTP/1.1\r\nConnection: keep-alive, content-length\r\nContent-Length: {n}\r\n\r\n{smuggled}"
            ),
        ),
        (
            "CL.TE",
            format!(
                "POST {url}/innocent HTTP/1.1\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}",
                chunked.len()
            ),
        ),
        (
            "TE.CL",
            format!("POST {url}/innocent HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{chunked}"),
        ),
        (
            "TE.TE, a second Transfer-Encoding",
            format!(
                "POST {url}/innocent HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n{chunked}"
            ),
        ),
        ("TE.TE, xchunked", format!("POST {url}/innocent HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n{chunked}")),
        (
            "TE.TE, chunked then identity",
            format!("POST {url}/innocent HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n{chunked}"),
        ),
        (
            "TE.TE, a space before the colon",
            format!("POST {url}/innocent HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n{chunked}"),
        ),
        ("CL.0 on GET", format!("GET {url}/innocent HTTP/1.1\r\nContent-Length: {n}\r\n\r\n{smuggled}")),
        (
            "a header name read as Content-Length",
            format!("POST {url}/innocent HTTP/1.1\r\nContent_Length: {n}\r\n\r\n{smuggled}"),
        ),
        (
            "Content-Length twice",
            format!("POST {url}/innocent HTTP/1.1\r\nContent-Length: {n}\r\nContent-Length: {n}\r\n\r\n{smuggled}"),
        ),
        (
            "Content-Length listed twice",
            format!("POST {url}/innocent HTTP/1.1\r\nContent-Length: {n}, {n}\r\n\r\n{smuggled}"),
        ),
        ("a bare LF", format!("POST {url}/innocent HTTP/1.1\nContent-Length: {n}\n\n{smuggled}")),
        (
            "a folded Transfer-Encoding",
            format!(
                "POST {url}/innocent HTTP/1.1\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n\r\n{smuggled}"
            ),
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            format!("POST {url}/innocent HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"),
        ),
    ];
    for (family, request) in &refused {
        let mut s = TcpStream::connect(p.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let _ = s.write_all(format!("GET {url}/next HTTP/1.1\r\n\r\n").as_bytes());
        let r = read_response(&mut s);
        assert_eq!(status(&r), 400, "{family}: {r}");
        let rest = read_response(&mut s);
        assert!(!rest.contains("answer to /smuggled"), "{family}: {rest}");
    }
    let seen = up.seen();
    assert!(!seen.contains("/smuggled") && !seen.contains("/innocent"), "refused before the upstream: {seen}");
    // A correctly framed body that this upstream reads as a request of its own (its CL.0): the
    // proxy cannot stop the upstream misreading it, but its answer must not come back as the
    // answer to the client's next request on the same connection.
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let post = format!("POST {url}/innocent HTTP/1.1\r\nContent-Length: {n}\r\n\r\n{smuggled}");
    s.write_all(post.as_bytes()).unwrap();
    let first = read_response(&mut s);
    assert!(first.ends_with("answer to /innocent"), "{first}");
    s.write_all(format!("GET {url}/next HTTP/1.1\r\n\r\n").as_bytes()).unwrap();
    let next = read_response(&mut s);
    assert!(next.ends_with("answer to /next"), "the next request got another answer: {next}");
}
