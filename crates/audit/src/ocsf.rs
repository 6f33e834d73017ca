//! Records as OCSF 1.1 events, for SIEMs. Each kind maps onto the class that describes it:
//!
//! | kind            | class                          | activity                    |
//! |-----------------|--------------------------------|-----------------------------|
//! | exec            | Process Activity (1007)        | Launch (1)                  |
//! | connect, `http` | HTTP Activity (4002)           | by method (Get 3, Post 6, …)|
//! | connect, other  | Network Activity (4001)        | Open (1)                    |
//! | dns             | DNS Activity (4003)            | Query (1)                   |
//! | tool_call, hook | API Activity (6003)            | Other (99)                  |
//! | lifecycle       | Application Lifecycle (6002)   | Start (3) / Stop (4) / Other|
//! | alert, limit    | Detection Finding (2004)       | Create (1)                  |
//!
//! Checkpoints are the store's own and are not exported. A denial has disposition Blocked (2)
//! and status Failure; the original record is kept whole in `unmapped`.

use serde_json::{Value, json};

use crate::record::{Kind, Stored};
use portcullis_policy::Decision;

/// The OCSF schema version the events follow.
pub const VERSION: &str = "1.1.0";

/// `stored` as an OCSF event; `None` for checkpoints.
pub fn event(stored: &Stored) -> Option<Value> {
    let r = &stored.record;
    let input = r.input.clone().unwrap_or(Value::Null);
    let field = |k: &str| input.get(k).cloned().unwrap_or(Value::Null);
    let (category, class, activity, specific) = match r.kind {
        Kind::Checkpoint => return None,
        Kind::Exec => {
            let argv: Vec<String> = input
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            (
                1,
                1007,
                1,
                json!({"process": {"cmd_line": argv.join(" "), "pid": field("pid"), "file": {"path": field("path")}, "cwd": field("cwd")}}),
            )
        }
        Kind::Connect if r.event == "http" => {
            let method = field("method");
            let activity = match method.as_str().unwrap_or("") {
                "CONNECT" => 1,
                "DELETE" => 2,
                "GET" => 3,
                "HEAD" => 4,
                "OPTIONS" => 5,
                "POST" => 6,
                "PUT" => 7,
                "TRACE" => 8,
                _ => 99,
            };
            let status = r.outcome.as_ref().and_then(|o| o.get("status")).cloned().unwrap_or(Value::Null);
            (
                4,
                4002,
                activity,
                json!({
                    "http_request": {"http_method": method, "url": {"hostname": field("host"), "port": field("port"), "path": field("path")}},
                    "http_response": {"code": status},
                    "dst_endpoint": {"hostname": field("host"), "port": field("port")},
                    "traffic": traffic(stored),
                }),
            )
        }
        Kind::Connect => (
            4,
            4001,
            1,
            json!({"dst_endpoint": {"hostname": field("host"), "port": field("port")}, "traffic": traffic(stored)}),
        ),
        Kind::Dns => (4, 4003, 1, json!({"query": {"hostname": field("name"), "type": field("qtype")}})),
        Kind::ToolCall | Kind::Hook => (6, 6003, 99, json!({"api": {"operation": r.tool, "request": {"data": input}}})),
        Kind::Lifecycle => {
            let activity = match r.event.as_str() {
                "session_start" => 3,
                "session_end" => 4,
                _ => 99,
            };
            (6, 6002, activity, json!({"app": {"name": "portcullis", "vendor_name": "Portcullis"}}))
        }
        Kind::Alert | Kind::Limit => (
            2,
            2004,
            1,
            json!({"finding_info": {"title": r.event, "uid": format!("{}-{}", r.session, stored.seq), "desc": r.data.get("message").or_else(|| r.data.get("limit")).cloned()}}),
        ),
    };
    let denied = r.decision.as_ref().is_some_and(|d| d.decision != Decision::Allow);
    let severity = match (r.kind, denied) {
        (Kind::Alert, _) => 4,
        (_, true) => 3,
        _ => 1,
    };
    let mut event = json!({
        "time": r.ts_ms,
        "category_uid": category,
        "class_uid": class,
        "activity_id": activity,
        "type_uid": class * 100 + activity,
        "severity_id": severity,
        "status_id": if denied || r.outcome.as_ref().is_some_and(|o| o.get("error").is_some()) { 2 } else { 1 },
        "message": r.decision.as_ref().map(|d| d.reason.clone()).unwrap_or_else(|| r.event.clone()),
        "metadata": {
            "version": VERSION,
            "uid": stored.seq.to_string(),
            "product": {"name": "Portcullis", "vendor_name": "Portcullis", "version": env!("CARGO_PKG_VERSION")},
            "log_name": "portcullis-audit",
        },
        "actor": {
            "user": {"uid": r.uid.map(|u| u.to_string()), "name": r.agent},
            "session": {"uid": r.session},
        },
        "unmapped": serde_json::to_value(stored).unwrap_or(Value::Null),
    });
    if let Some(d) = &r.decision {
        event["disposition_id"] = json!(if d.decision == Decision::Allow { 1 } else { 2 });
        event["policy"] = json!({"uid": d.rules.first(), "desc": d.reason});
    }
    if let Some(l) = r.latency_us {
        event["duration"] = json!(l / 1000);
    }
    if let (Value::Object(e), Value::Object(s)) = (&mut event, specific) {
        e.extend(s);
    }
    Some(event)
}

fn traffic(stored: &Stored) -> Value {
    let o = stored.record.outcome.clone().unwrap_or(Value::Null);
    json!({"bytes_out": o.get("bytes_up"), "bytes_in": o.get("bytes_down")})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DecisionRecord, Record};

    #[test]
    fn kinds_map_onto_their_classes_and_denials_are_blocked() {
        let mut exec = Record::new(Kind::Exec, "exec", "s1");
        exec.input = Some(json!({"argv": ["git", "push"], "pid": 9, "path": "/usr/bin/git", "cwd": "/w"}));
        exec.decision =
            Some(DecisionRecord { decision: Decision::Deny, rules: vec!["tools.deny[0]".into()], reason: "no".into() });
        let e = event(&Stored { seq: 4, prev: String::new(), record: exec }).unwrap();
        assert_eq!((e["class_uid"].as_u64(), e["type_uid"].as_u64()), (Some(1007), Some(100_701)));
        assert_eq!(e["process"]["cmd_line"], "git push");
        assert_eq!((e["disposition_id"].as_u64(), e["status_id"].as_u64()), (Some(2), Some(2)));
        assert_eq!(e["policy"]["uid"], "tools.deny[0]");
        assert_eq!(e["unmapped"]["seq"], 4);
        let mut http = Record::new(Kind::Connect, "http", "s1");
        http.input = Some(json!({"host": "example.com", "port": 80, "method": "POST", "path": "/x"}));
        http.outcome = Some(json!({"status": 200, "bytes_up": 10, "bytes_down": 20}));
        let e = event(&Stored { seq: 5, prev: String::new(), record: http }).unwrap();
        assert_eq!((e["class_uid"].as_u64(), e["activity_id"].as_u64()), (Some(4002), Some(6)));
        assert_eq!(e["traffic"]["bytes_in"], 20);
        let mut dns = Record::new(Kind::Dns, "query", "s1");
        dns.input = Some(json!({"name": "x.example", "qtype": "TXT"}));
        assert_eq!(event(&Stored { seq: 6, prev: String::new(), record: dns }).unwrap()["class_uid"], 4003);
        let cp = Record::new(Kind::Checkpoint, "checkpoint", "store");
        assert!(event(&Stored { seq: 7, prev: String::new(), record: cp }).is_none());
    }
}
