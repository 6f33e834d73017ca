//! The requests the engine decides: tool calls, execs, connects, name resolutions, file access.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Whether a file is being read or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Reading, listing or searching.
    Read,
    /// Creating, changing or deleting.
    Write,
}

/// One question for the policy. Borrowed, so the hot path does not copy its input.
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    /// A harness tool call: the tool's name and its input JSON, as Claude Code sends them.
    ToolCall {
        /// `Bash`, `Read`, `WebFetch`, `mcp__github__create_issue`, …
        tool: &'a str,
        /// The tool's input object.
        input: &'a Value,
    },
    /// A program started inside the sandbox.
    Exec {
        /// The argument vector; `argv[0]` may be a path.
        argv: &'a [String],
        /// The working directory of the exec.
        cwd: &'a Path,
    },
    /// A TCP connection to `host:port` (a name or an IP literal in any spelling).
    Connect {
        /// The destination host.
        host: &'a str,
        /// The destination port.
        port: u16,
    },
    /// A DNS lookup of `name`.
    Resolve {
        /// The name being resolved.
        name: &'a str,
    },
    /// A file opened by a file tool or seen by the sandbox.
    FileAccess {
        /// Absolute, or relative to the workdir; `~/` means the home directory.
        path: &'a Path,
        /// Read or write.
        access: Access,
    },
}

/// An owned request, read from JSON (one line of `policy explain --jsonl`).
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedRequest {
    /// See [`Request::ToolCall`].
    ToolCall {
        /// Tool name.
        tool: String,
        /// Tool input.
        input: Value,
    },
    /// See [`Request::Exec`].
    Exec {
        /// Argument vector.
        argv: Vec<String>,
        /// Working directory.
        cwd: PathBuf,
    },
    /// See [`Request::Connect`].
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// See [`Request::Resolve`].
    Resolve {
        /// Name.
        name: String,
    },
    /// See [`Request::FileAccess`].
    FileAccess {
        /// Path.
        path: PathBuf,
        /// Access.
        access: Access,
    },
}

/// A request line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

impl OwnedRequest {
    /// Borrows the request for [`crate::Profile::evaluate`].
    pub fn as_request(&self) -> Request<'_> {
        match self {
            OwnedRequest::ToolCall { tool, input } => Request::ToolCall { tool, input },
            OwnedRequest::Exec { argv, cwd } => Request::Exec { argv, cwd },
            OwnedRequest::Connect { host, port } => Request::Connect { host, port: *port },
            OwnedRequest::Resolve { name } => Request::Resolve { name },
            OwnedRequest::FileAccess { path, access } => Request::FileAccess { path, access: *access },
        }
    }

    /// A shell command line as a `Bash` tool call.
    pub fn bash(command: &str) -> Self {
        OwnedRequest::ToolCall { tool: "Bash".into(), input: serde_json::json!({ "command": command }) }
    }

    /// Reads one request from JSON. Accepted shapes:
    ///
    /// - `"git push --force"`: a shell command line (a `Bash` tool call);
    /// - `{"tool": "Bash", "input": {"command": "ls"}}` (`tool_name`/`tool_input`, as in hook events, also work);
    /// - `{"exec": ["git", "push"], "cwd": "/src"}`;
    /// - `{"connect": "example.com:443"}`;
    /// - `{"resolve": "example.com"}`;
    /// - `{"read": "./src/main.rs"}` or `{"write": "~/.bashrc"}`.
    ///
    /// Returns the request and the `agent` field, if any.
    pub fn from_json(value: &Value) -> Result<(Self, Option<String>), RequestError> {
        let err = |m: &str| RequestError(m.to_owned());
        if let Value::String(command) = value {
            return Ok((OwnedRequest::bash(command), None));
        }
        let Value::Object(map) = value else {
            return Err(err("a request is a JSON object or a command string"));
        };
        let agent = match map.get("agent") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) => Some(a.clone()),
            Some(_) => return Err(err("`agent` must be a string")),
        };
        let string = |key: &str| -> Result<String, RequestError> {
            map.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| RequestError(format!("`{key}` must be a string")))
        };
        let request = if let Some(tool) = map.get("tool").or_else(|| map.get("tool_name")) {
            let tool = tool.as_str().ok_or_else(|| err("`tool` must be a string"))?.to_owned();
            let input = map
                .get("input")
                .or_else(|| map.get("tool_input"))
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            OwnedRequest::ToolCall { tool, input }
        } else if let Some(argv) = map.get("exec") {
            let argv: Vec<String> = argv
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect())
                .ok_or_else(|| err("`exec` must be an array of strings"))?;
            let cwd = map.get("cwd").and_then(Value::as_str).unwrap_or(".").into();
            OwnedRequest::Exec { argv, cwd }
        } else if map.contains_key("connect") {
            let (host, port) = parse_host_port(&string("connect")?)?;
            OwnedRequest::Connect { host, port }
        } else if map.contains_key("resolve") {
            OwnedRequest::Resolve { name: string("resolve")? }
        } else if map.contains_key("read") {
            OwnedRequest::FileAccess { path: string("read")?.into(), access: Access::Read }
        } else if map.contains_key("write") {
            OwnedRequest::FileAccess { path: string("write")?.into(), access: Access::Write }
        } else {
            return Err(err("a request needs one of `tool`, `exec`, `connect`, `resolve`, `read` or `write`"));
        };
        Ok((request, agent))
    }
}

/// Splits `host:port` or `[v6]:port`.
pub fn parse_host_port(s: &str) -> Result<(String, u16), RequestError> {
    let bad = || RequestError(format!("`{s}` is not `host:port`"));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':').ok_or_else(bad)?)
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_request_shape() {
        let (r, _) = OwnedRequest::from_json(&json!("rm -rf /")).unwrap();
        assert_eq!(r, OwnedRequest::bash("rm -rf /"));
        let (r, agent) =
            OwnedRequest::from_json(&json!({"tool_name": "Read", "tool_input": {"file_path": "x"}, "agent": "ci"}))
                .unwrap();
        assert!(matches!(r, OwnedRequest::ToolCall { .. }));
        assert_eq!(agent.as_deref(), Some("ci"));
        let (r, _) = OwnedRequest::from_json(&json!({"connect": "[::1]:443"})).unwrap();
        assert_eq!(r, OwnedRequest::Connect { host: "::1".into(), port: 443 });
        assert!(OwnedRequest::from_json(&json!({"connect": "nohost"})).is_err());
        assert!(OwnedRequest::from_json(&json!({"exec": "ls"})).is_err());
        assert!(OwnedRequest::from_json(&json!({"frobnicate": 1})).is_err());
    }
}
