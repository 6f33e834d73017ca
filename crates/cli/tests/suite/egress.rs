//! Egress from inside `portcullis run`, with real clients (curl, python's urllib, git over
//! HTTPS, dig) against servers on the host's loopback, and `portcullis proxy` standalone.
//!
//! A name the policy allows must resolve, for the supervisor, to those servers: the tests run
//! `portcullis` in a mount namespace of their own whose `/etc/hosts` maps `allowed.test` to
//! 127.0.0.1 (the supervisor's real resolution; nothing is stubbed). That takes root, so these
//! run as root and, through `setpriv`, as the unprivileged user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;
use super::run::{Case, NOBODY, PRELUDE, Session, User, available, both, is_root};

/// Test servers on the host's loopback: HTTP and HTTPS (a fresh self-signed certificate for
/// `allowed.test`), serving files (a git repository among them) and counting uploaded bytes.
struct Servers {
    child: Child,
    http: u16,
    https: u16,
    cert: PathBuf,
    _dir: TempDir,
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVE_PY: &str = r#"
import http.server, json, os, ssl, sys, threading
root, cert, key, out = sys.argv[1:5]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def log_message(self, *a):
        pass
    def do_PUT(self):
        n = int(self.headers.get('Content-Length', 0)); left = n
        while left > 0:
            b = self.rfile.read(min(left, 65536))
            if not b:
                break
            left -= len(b)
        body = ('got %d' % (n - left)).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    do_POST = do_PUT
plain = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
tls = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
for s in (plain, tls):
    threading.Thread(target=s.serve_forever, daemon=True).start()
open(out + '.tmp', 'w').write(json.dumps([plain.server_address[1], tls.server_address[1]]))
os.rename(out + '.tmp', out)
threading.Event().wait()
"#;

/// Writes `ROOT/simple/demo/` linking to a wheel of `demo 1.0` in `ROOT/files/`.
const MAKE_INDEX_PY: &str = r#"
import hashlib, os, sys, zipfile
root = sys.argv[1]
os.makedirs(os.path.join(root, 'files'))
os.makedirs(os.path.join(root, 'simple', 'demo'))
wheel = os.path.join(root, 'files', 'demo-1.0-py3-none-any.whl')
nl = chr(10)
with zipfile.ZipFile(wheel, 'w') as z:
    z.writestr('demo/__init__.py', 'VERSION = "1.0"' + nl)
    z.writestr('demo-1.0.dist-info/METADATA', nl.join(['Metadata-Version: 2.1', 'Name: demo', 'Version: 1.0', '']))
    z.writestr('demo-1.0.dist-info/WHEEL', nl.join(['Wheel-Version: 1.0', 'Generator: test', 'Root-Is-Purelib: true', 'Tag: py3-none-any', '']))
    z.writestr('demo-1.0.dist-info/RECORD', '')
digest = hashlib.sha256(open(wheel, 'rb').read()).hexdigest()
open(os.path.join(root, 'simple', 'index.html'), 'w').write('<a href="demo/">demo</a>' + nl)
open(os.path.join(root, 'simple', 'demo', 'index.html'), 'w').write(
    '<a href="../../files/demo-1.0-py3-none-any.whl#sha256=%s">demo-1.0-py3-none-any.whl</a>' % digest + nl)
"#;

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Servers {
    fn start() -> Servers {
        let dir = TempDir::new();
        let root = dir.path().join("www");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), "hello from upstream").unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        run_ok(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]).args([
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
            "-subj".as_ref(),
            "/CN=allowed.test".as_ref(),
            "-addext".as_ref(),
            "subjectAltName=DNS:allowed.test".as_ref(),
        ]));
        // A repository served over "dumb" HTTP: static files, as any web server can.
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("README"), "cloned through the proxy\n").unwrap();
        let git = |args: &[&str], cwd: &Path| {
            run_ok(
                Command::new("git")
                    .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
                    .args(args)
                    .current_dir(cwd),
            )
        };
        git(&["init", "-q", "-b", "main"], &src);
        git(&["add", "README"], &src);
        git(&["commit", "-q", "-m", "first"], &src);
        git(&["clone", "-q", "--bare", src.to_str().unwrap(), root.join("repo.git").to_str().unwrap()], dir.path());
        git(&["update-server-info"], &root.join("repo.git"));
        // A package index as pip reads one (PEP 503), with one real wheel.
        run_ok(Command::new("/usr/bin/python3").args(["-c", MAKE_INDEX_PY]).arg(&root));
        let ports = dir.path().join("ports.json");
        let child = Command::new("/usr/bin/python3")
            .args(["-c", SERVE_PY])
            .args([&root, &cert, &key, &ports])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if ports.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let p: Vec<u16> = serde_json::from_str(&std::fs::read_to_string(&ports).unwrap()).unwrap();
        Servers { child, http: p[0], https: p[1], cert, _dir: dir }
    }
}

/// True when the test can map names here (root); fails where the sandbox is required.
pub(super) fn mapping_available(user: User) -> bool {
    if !available(user) {
        return false;
    }
    if !is_root() {
        assert!(std::env::var("PORTCULLIS_REQUIRE_SANDBOX").as_deref() != Ok("1"), "these tests need root");
        eprintln!("skipping: mapping a name to loopback needs root");
        return false;
    }
    true
}

/// `portcullis run` as the case's user, in a mount namespace whose `/etc/hosts` maps
/// `allowed.test` (and `localhost`) to 127.0.0.1.
fn run_mapped(case: &Case, args: &[&str], command: &[&str]) -> Session {
    let hosts = case.work.parent().unwrap().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost allowed.test\n::1 localhost\n").unwrap();
    let s = run_in_mount_namespace(case, "mount --bind \"$0\" /etc/hosts", &hosts, args, command);
    s.check_enforced(case.user);
    s
}

/// `portcullis run` as the case's user, in a private mount namespace that root first sets up
/// with the shell command `setup` (`$0` is `arg`).
pub(super) fn run_in_mount_namespace(case: &Case, setup: &str, arg: &Path, args: &[&str], command: &[&str]) -> Session {
    let inner = case.command(args, command);
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &format!("{setup} && exec \"$@\"")]);
    cmd.arg(arg);
    if case.user == User::Unprivileged {
        cmd.arg("setpriv").arg(format!("--reuid={NOBODY}")).arg(format!("--regid={NOBODY}")).arg("--clear-groups");
    }
    cmd.arg(inner.get_program()).args(inner.get_args());
    cmd.current_dir(inner.get_current_dir().unwrap()).env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    Session::from(cmd.output().unwrap())
}

/// A policy allowing the test servers by name, with loopback listed, and the guards that would
/// stop `curl` and `git` (and `curl --noproxy`) before the walls are tested switched off.
fn policy(servers: &Servers, extra: &str) -> String {
    format!(
        "[network]\nallow = [\"allowed.test:{}\", \"allowed.test:{}\"]\nallow_cidrs = [\"127.0.0.0/8\"]\n{extra}\n\
         [guards]\nnetwork_transfer = \"off\"\nharness_tampering = \"off\"\n",
        servers.http, servers.https
    )
}

both!(allowed_names_are_reachable_and_everything_else_is_not, |user| {
    if !mapping_available(user) {
        return;
    }
    let servers = Servers::start();
    let case = Case::new(user);
    let policy = case.policy(&policy(&servers, ""));
    case.script("cert.pem", &std::fs::read_to_string(&servers.cert).unwrap());
    let (p, t) = (servers.http, servers.https);
    case.script(
        "fetch.py",
        &format!(
            "{PRELUDE}import urllib.request\nprint(urllib.request.urlopen('http://allowed.test:{p}/hello.txt').read().decode())\n\
             attempt(lambda: socket.create_connection(('1.1.1.1', 80), timeout=3))\n\
             attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('1.1.1.1', 53)))\n"
        ),
    );
    let script = format!(
        "curl -s http://allowed.test:{p}/hello.txt; echo\n\
         curl -s --cacert cert.pem https://allowed.test:{t}/hello.txt; echo\n\
         /usr/bin/python3 fetch.py\n\
         GIT_SSL_CAINFO=$PWD/cert.pem git clone -q https://allowed.test:{t}/repo.git clone && cat clone/README\n\
         curl -s -o /dev/null -D - http://denied.test/ | grep -i -E '^(HTTP/|x-portcullis-denied)' | cut -c1-60\n\
         curl -s --noproxy '*' http://allowed.test:{p}/hello.txt; echo \"no proxy: $?\"\n\
         dig +time=2 +tries=1 @127.0.0.1 denied.test | grep -o -E 'status: [A-Z]+|ANSWER: [0-9]+'\n\
         dig +time=2 +tries=1 @127.0.0.1 allowed.test TXT | grep -o -E 'status: [A-Z]+'\n\
         dig +short +time=2 +tries=1 @127.0.0.1 allowed.test\n"
    );
    case.script("agent.sh", &script);
    let s = run_mapped(&case, &["--policy", &policy], &["/bin/sh", "agent.sh"]);
    let lines = s.lines();
    assert_eq!(lines[0], "hello from upstream", "HTTP through the proxy: {s:?}");
    assert_eq!(lines[1], "hello from upstream", "HTTPS through CONNECT: {s:?}");
    assert_eq!(lines[2], "hello from upstream", "python urllib: {s:?}");
    // A direct connect meets Landlock (port 80 is not the proxy's) before the missing route.
    assert!(["Permission denied", "Network is unreachable"].contains(&lines[3]), "a direct connect to an IP: {s:?}");
    assert_eq!(lines[4], "Network is unreachable", "a UDP send: {s:?}");
    assert_eq!(lines[5], "cloned through the proxy", "git clone over HTTPS: {s:?}");
    assert!(lines[6].starts_with("HTTP/1.1 403"), "{s:?}");
    assert!(lines[7].to_ascii_lowercase().starts_with("x-portcullis-denied: default.network"), "{s:?}");
    assert!(lines[8].starts_with("no proxy: ") && lines[8] != "no proxy: 0", "curl --noproxy '*': {s:?}");
    assert_eq!(&lines[9..12], ["status: REFUSED", "ANSWER: 0", "status: REFUSED"], "{s:?}");
    assert_eq!(lines[12], "127.0.0.1", "{s:?}");
    // The records: each request with its destination, method, path, decision and bytes.
    let events = case.events(&s);
    let connects: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "connect").collect();
    let plain =
        connects.iter().find(|e| e["event"] == "http" && e["input"]["path"] == "/hello.txt").expect("the HTTP request");
    assert_eq!(
        (plain["input"]["host"].as_str(), plain["input"]["method"].as_str(), plain["decision"]["decision"].as_str()),
        (Some("allowed.test"), Some("GET"), Some("allow"))
    );
    assert!(plain["outcome"]["bytes_down"].as_u64().unwrap() > 19 && plain["latency_us"].is_u64(), "{plain}");
    assert!(
        connects
            .iter()
            .any(|e| e["event"] == "connect" && e["input"]["port"] == t && e["decision"]["decision"] == "allow"),
        "{connects:?}"
    );
    assert!(
        connects.iter().any(|e| e["input"]["host"] == "denied.test" && e["decision"]["decision"] == "deny"),
        "{connects:?}"
    );
    let dns: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "dns").collect();
    assert!(dns.iter().any(|e| e["input"]["name"] == "denied.test" && e["decision"]["decision"] == "deny"), "{dns:?}");
    assert!(dns.iter().any(|e| e["input"]["qtype"] == "TXT" && e["decision"]["decision"] == "deny"), "{dns:?}");
    assert!(s.summary["egress"]["destinations"].as_array().unwrap().len() >= 3, "{}", s.summary);
});

// Under the built-in guards, `network_transfer` once asked about (so refused) every `curl`,
// `wget`, `git` and `pip` to a host the policy allows: the proxy answers that concern.
both!(allowed_hosts_just_work_with_real_clients_and_others_get_the_proxys_403, |user| {
    if !mapping_available(user) {
        return;
    }
    let servers = Servers::start();
    let case = Case::new(user);
    let policy = case.policy("[network]\nallow = [\"allowed.test\"]\nallow_cidrs = [\"127.0.0.0/8\"]\n");
    let p = servers.http;
    let script = format!(
        "curl -s http://allowed.test:{p}/hello.txt; echo\n\
         wget -q -O - http://allowed.test:{p}/hello.txt; echo\n\
         git clone -q http://allowed.test:{p}/repo.git clone && cat clone/README\n\
         PIP_DISABLE_PIP_VERSION_CHECK=1 /usr/bin/python3 -m pip download -q --no-cache-dir --no-deps \
           --index-url http://allowed.test:{p}/simple/ --trusted-host allowed.test -d dl demo >/dev/null 2>pip.err; ls dl || cat pip.err\n\
         curl -s -o /dev/null -D - http://unlisted.test/ | grep -i -E '^(HTTP/|x-portcullis-denied)' | cut -c1-60\n\
         wget -q -O /dev/null http://unlisted.test/ 2>&1; echo \"wget: $?\"\n"
    );
    case.script("agent.sh", &script);
    let s = run_mapped(&case, &["--policy", &policy], &["/bin/sh", "agent.sh"]);
    let lines = s.lines();
    assert_eq!(
        &lines[..5],
        [
            "hello from upstream",
            "hello from upstream",
            "cloned through the proxy",
            "demo-1.0-py3-none-any.whl",
            "HTTP/1.1 403 Forbidden"
        ],
        "{s:?}"
    );
    assert!(lines[5].to_ascii_lowercase().starts_with("x-portcullis-denied: default.network"), "{s:?}");
    assert_eq!(lines[6], "wget: 8", "wget got the proxy's error answer: {s:?}");
    assert_eq!(s.summary["denials"], serde_json::json!([]), "no exec was refused: {}", s.summary);
    let deferred = s.summary["guards_deferred"].to_string();
    assert!(deferred.contains("network_transfer") && deferred.contains("the egress proxy"), "{deferred}");
});

// The host's /etc/hosts (internal names and addresses) once showed inside, and its names
// resolved without the filtering resolver.
both!(the_hosts_own_host_entries_are_not_seen_inside, |user| {
    if !mapping_available(user) {
        return;
    }
    let case = Case::new(user);
    let hosts = case.work.parent().unwrap().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.77.0.9 build-cache.corp.internal\n").unwrap();
    std::fs::set_permissions(&hosts, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let probe = "grep -c corp /etc/hosts; getent hosts build-cache.corp.internal || echo unresolved; \
                 getent hosts localhost >/dev/null && echo localhost; getent hosts portcullis >/dev/null && echo self; \
                 grep '^hosts:' /etc/nsswitch.conf\n";
    case.script("agent.sh", probe);
    let s = run_in_mount_namespace(&case, "mount --bind \"$0\" /etc/hosts", &hosts, &[], &["/bin/sh", "agent.sh"]);
    s.check_enforced(case.user);
    assert_eq!(s.lines(), ["0", "unresolved", "localhost", "self", "hosts: files dns"], "{s:?}");
    // Allowed by the policy, the name resolves through the sandbox's resolver.
    let policy = case.policy("[network]\nallow = [\"build-cache.corp.internal\"]\nallow_cidrs = [\"10.77.0.0/16\"]\n");
    case.script("agent.sh", "getent hosts build-cache.corp.internal || echo unresolved\n");
    let s = run_in_mount_namespace(
        &case,
        "mount --bind \"$0\" /etc/hosts",
        &hosts,
        &["--policy", &policy],
        &["/bin/sh", "agent.sh"],
    );
    assert!(s.stdout.starts_with("10.77.0.9"), "{s:?}");
});

both!(the_outbound_ceiling_stops_an_upload, |user| {
    if !mapping_available(user) {
        return;
    }
    let servers = Servers::start();
    let case = Case::new(user);
    let policy = case.policy(&policy(&servers, "outbound_bytes = \"1 MiB\""));
    case.script(
        "agent.sh",
        &format!(
            "head -c 5242880 /dev/zero > big\ncurl -s -T big http://allowed.test:{}/up; echo \" curl: $?\"\n",
            servers.http
        ),
    );
    let s = run_mapped(&case, &["--policy", &policy], &["/bin/sh", "agent.sh"]);
    assert!(!s.stdout.contains("got 5242880"), "the whole upload went out: {s:?}");
    let sent = s.summary["egress"]["outbound_bytes"].as_u64().unwrap();
    assert!(sent <= (1 << 20) + 64 * 1024, "{sent} bytes went out: {}", s.summary);
    assert!(sent > 512 * 1024, "the upload never started: {s:?}");
    assert!(s.summary["limits_hit"].to_string().contains("outbound bytes"), "{}", s.summary);
    let events = case.events(&s);
    assert!(events.iter().any(|e| e["event"] == "outbound_bytes_80_percent"), "the 80% warning");
});

both!(a_listed_local_port_serves_the_agent_and_others_are_walled, |user| {
    if !available(user) {
        return;
    }
    let case = Case::new(user);
    let policy = case.policy("[network]\nlocal_ports = [8080]\n");
    case.script(
        "agent.py",
        &format!(
            "{PRELUDE}import http.server, threading, urllib.request\n\
             srv = http.server.ThreadingHTTPServer(('127.0.0.1', 8080), http.server.SimpleHTTPRequestHandler)\n\
             threading.Thread(target=srv.serve_forever, daemon=True).start()\n\
             opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))\n\
             print(opener.open('http://127.0.0.1:8080/f').read().decode().strip())\n\
             attempt(lambda: socket.socket().bind(('127.0.0.1', 8081)))\n\
             attempt(lambda: socket.create_connection(('127.0.0.1', 8081), timeout=2))\n"
        ),
    );
    let s = case.run(&["--policy", &policy], &["/usr/bin/python3", "agent.py"]);
    assert_eq!(s.lines(), ["hello", "Permission denied", "Permission denied"], "{s:?}");
});

#[test]
fn a_denied_name_never_reaches_the_upstream_resolver() {
    if !mapping_available(User::Root) {
        return;
    }
    // A network namespace of the test's own, where the host's resolver is a counting server on
    // 127.0.0.1:53 that answers allowed.test; `portcullis proxy` resolves through it.
    let dir = TempDir::new();
    let count = dir.path().join("queries");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[network]\nallow = [\"allowed.test\"]\nallow_cidrs = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    assert!(Path::new("/usr/bin/dig").exists(), "this test queries with dig: install dnsutils (`.ci/test` does)");
    let upstream = format!(
        r#"import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 53))
open('upstream.ready', 'w').close()
while True:
    q, peer = s.recvfrom(4096)
    labels, i = [], 12
    while q[i]:
        labels.append(q[i+1:i+1+q[i]].decode()); i += 1 + q[i]
    name, qtype = '.'.join(labels), q[i+1:i+3]
    open({count:?}, 'a').write(name + '\n')
    answer = b''
    if name == 'allowed.test' and qtype == b'\x00\x01':
        answer = b'\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x0a\x01\x02\x03'
    flags = b'\x81\x80' if name == 'allowed.test' else b'\x81\x83'
    s.sendto(q[:2] + flags + q[4:6] + (b'\x00\x01' if answer else b'\x00\x00') + b'\x00\x00\x00\x00' + q[12:i+5] + answer, peer)
"#
    );
    std::fs::write(dir.path().join("upstream.py"), upstream).unwrap();
    // The script is PID 1 of its own PID namespace: when it exits, for whatever reason, the
    // kernel kills the upstream and the proxy with it, so nothing holds the output open. The
    // servers are waited for (a ready file; the resolver's UDP port 5300 = 0x14B4 in
    // /proc/net/udp), with a deadline, never slept for.
    let script = format!(
        "set -e\nip link set lo up\nmount --bind {resolv:?} /etc/resolv.conf\n\
         wait_for() {{ i=0; until eval \"$1\"; do i=$((i+1)); [ $i -lt 400 ] || {{ echo \"not ready: $1\" >&2; exit 1; }}; sleep 0.025; done; }}\n\
         /usr/bin/python3 upstream.py &\n\
         wait_for '[ -e upstream.ready ]'\n\
         PORTCULLIS_STATE_DIR=$PWD/state {bin} proxy --policy p.toml --listen 127.0.0.1:3999 --dns 127.0.0.1:5300 2>proxy.log &\n\
         wait_for 'grep -q \":14B4 \" /proc/net/udp'\n\
         dig +time=2 +tries=1 -p 5300 @127.0.0.1 denied.example | grep -o -E 'status: [A-Z]+'\n\
         dig +time=2 +tries=1 -p 5300 @127.0.0.1 tunnel.denied.example TXT | grep -o -E 'status: [A-Z]+'\n\
         dig +short +time=2 +tries=1 -p 5300 @127.0.0.1 allowed.test\n",
        bin = env!("CARGO_BIN_EXE_portcullis")
    );
    let out = Command::new("unshare")
        .args(["-m", "-n", "-p", "-f", "--propagation", "private", "sh", "-c", &script])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["status: REFUSED", "status: REFUSED", "10.1.2.3"], "{}", String::from_utf8_lossy(&out.stderr));
    let seen = std::fs::read_to_string(&count).unwrap_or_default();
    assert!(seen.lines().all(|l| l == "allowed.test"), "the upstream saw: {seen}");
    assert!(seen.contains("allowed.test"), "the allowed name was resolved upstream: {seen}");
}

#[test]
fn a_proxy_beyond_loopback_needs_the_flag_and_a_password() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("p.toml"), "[network]\nallow = []\n").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["proxy", "--policy", "p.toml"])
            .args(args)
            .current_dir(dir.path())
            .env("PORTCULLIS_STATE_DIR", dir.path().join("state"))
            .env("PW", "")
            .output()
            .unwrap()
    };
    let out = run(&["--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dangerously-listen-public"));
    let out = run(&["--listen", "0.0.0.0:0", "--dangerously-listen-public", "--password-env", "PW"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
