//! SOCKS5 (RFC 1928) `CONNECT`, with the username/password method (RFC 1929) carrying the
//! identity (`agent`, `agent/tool` or `/tool`) and, where the proxy needs one, the password.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::Egress;
use crate::gate::Identity;
use crate::http::Conn;
use crate::proxy::{Connection, Refusal, tunnel};

const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NO_METHOD: u8 = 0xff;

/// Reply codes.
const SUCCEEDED: u8 = 0x00;
const NOT_ALLOWED: u8 = 0x02;
const HOST_UNREACHABLE: u8 = 0x04;
const COMMAND_UNSUPPORTED: u8 = 0x07;
const ADDRESS_UNSUPPORTED: u8 = 0x08;

fn reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

pub(crate) async fn serve(eg: Arc<Egress>, mut conn: Conn) {
    let deadline = eg.timeouts.head;
    let Ok(Some(method)) = timeout(deadline, negotiate(&eg, &mut conn)).await else { return };
    let who = match timeout(deadline, authenticate(&eg, &mut conn, method)).await {
        Ok(Some(who)) => who,
        _ => return,
    };
    let Ok(Some(request)) = timeout(deadline, read_request(&mut conn)).await else { return };
    let (host, port) = match request {
        Ok(hp) => hp,
        Err(code) => {
            let _ = conn.io.write_all(&reply(code)).await;
            return;
        }
    };
    let mut rec = Connection::new("socks5", &who);
    let dest = match eg.decide(&who, &host, port) {
        Ok(d) => d,
        Err((dest, v)) => {
            let _ = conn.io.write_all(&reply(NOT_ALLOWED)).await;
            rec.dest = Some(dest);
            rec.verdict = Some(v);
            eg.record_connection(&rec);
            return;
        }
    };
    rec.dest = Some(dest.clone());
    let (upstream, address) = match eg.dial(&who, &dest).await {
        Ok(u) => u,
        Err(Refusal::Denied(v)) => {
            let _ = conn.io.write_all(&reply(NOT_ALLOWED)).await;
            rec.verdict = Some(v);
            eg.record_connection(&rec);
            return;
        }
        Err(Refusal::Failed(e)) => {
            let _ = conn.io.write_all(&reply(HOST_UNREACHABLE)).await;
            rec.error = Some(e);
            eg.record_connection(&rec);
            return;
        }
    };
    rec.address = Some(address);
    if conn.io.write_all(&reply(SUCCEEDED)).await.is_err() {
        eg.record_connection(&rec);
        return;
    }
    let (client, early) = conn.into_parts();
    eg.record_tunnel(&rec, "open");
    rec.error = tunnel(&eg, client, early, upstream, &mut rec).await;
    eg.record_connection(&rec);
}

/// The method negotiation: the method agreed and announced, `None` when there is none.
async fn negotiate(eg: &Egress, conn: &mut Conn) -> Option<u8> {
    conn.need(2).await.ok()?;
    let n = usize::from(conn.buffered()[1]);
    conn.need(2 + n).await.ok()?;
    let methods = conn.buffered()[2..2 + n].to_vec();
    conn.consume(2 + n);
    // With a password to check, only the username/password method; without, either.
    let method = if eg.access.password.is_some() {
        if methods.contains(&USER_PASS) { USER_PASS } else { NO_METHOD }
    } else if methods.contains(&NO_AUTH) {
        NO_AUTH
    } else if methods.contains(&USER_PASS) {
        USER_PASS
    } else {
        NO_METHOD
    };
    conn.io.write_all(&[5, method]).await.ok()?;
    (method != NO_METHOD).then_some(method)
}

/// The username/password subnegotiation for that method, else the session's own identity.
async fn authenticate(eg: &Egress, conn: &mut Conn, method: u8) -> Option<Identity> {
    if method == NO_AUTH {
        return eg.identify(None).ok();
    }
    conn.need(2).await.ok()?;
    if conn.buffered()[0] != 1 {
        return None;
    }
    let ulen = usize::from(conn.buffered()[1]);
    conn.need(3 + ulen).await.ok()?;
    let plen = usize::from(conn.buffered()[2 + ulen]);
    conn.need(3 + ulen + plen).await.ok()?;
    let user = String::from_utf8_lossy(&conn.buffered()[2..2 + ulen]).into_owned();
    let pass = String::from_utf8_lossy(&conn.buffered()[3 + ulen..3 + ulen + plen]).into_owned();
    conn.consume(3 + ulen + plen);
    match eg.identify(Some((&user, &pass))) {
        Ok(who) => {
            conn.io.write_all(&[1, 0]).await.ok()?;
            Some(who)
        }
        Err(_) => {
            let _ = conn.io.write_all(&[1, 1]).await;
            None
        }
    }
}

/// The request: `Ok((host, port))`, `Err(reply code)` for one we do not serve, `None` when the
/// client went away.
async fn read_request(conn: &mut Conn) -> Option<Result<(String, u16), u8>> {
    conn.need(4).await.ok()?;
    let (ver, cmd, atyp) = (conn.buffered()[0], conn.buffered()[1], conn.buffered()[3]);
    if ver != 5 {
        return None;
    }
    let (host, used) = match atyp {
        1 => {
            conn.need(10).await.ok()?;
            let b = &conn.buffered()[4..8];
            (Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(), 8)
        }
        3 => {
            conn.need(5).await.ok()?;
            let len = usize::from(conn.buffered()[4]);
            conn.need(5 + len + 2).await.ok()?;
            (String::from_utf8_lossy(&conn.buffered()[5..5 + len]).into_owned(), 5 + len)
        }
        4 => {
            conn.need(22).await.ok()?;
            let mut b = [0u8; 16];
            b.copy_from_slice(&conn.buffered()[4..20]);
            (Ipv6Addr::from(b).to_string(), 20)
        }
        _ => return Some(Err(ADDRESS_UNSUPPORTED)),
    };
    let port = u16::from_be_bytes([conn.buffered()[used], conn.buffered()[used + 1]]);
    conn.consume(used + 2);
    if cmd != 1 {
        return Some(Err(COMMAND_UNSUPPORTED));
    }
    Some(Ok((host, port)))
}
