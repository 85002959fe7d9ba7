//! Control API client: one request per connection, one JSON line each way.
//! Used by `uswitchctl` and the CNI plugin.
use super::api::{ApiError, ErrorCode, Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Default control socket path.
pub const DEFAULT_CONTROL: &str = "/run/uswitch/uswitchd.sock";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach uswitchd at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("talking to uswitchd: {0}")]
    Io(#[from] std::io::Error),
    #[error("uswitchd sent an unreadable response: {0}")]
    Decode(String),
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl ClientError {
    /// The API error code when the daemon answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

/// Sends `req` and returns the result value (or the daemon's error).
pub fn call(
    control: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<serde_json::Value, ClientError> {
    let stream = UnixStream::connect(control).map_err(|source| ClientError::Connect {
        path: control.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Decode(e.to_string()))?;
    line.push('\n');
    // A timeout surfaces as EAGAIN ("Resource temporarily unavailable"): say what it means.
    let timed_out = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "uswitchd at {} did not answer within {timeout:?}",
                control.display()
            ),
        ),
        _ => e,
    };
    (&stream).write_all(line.as_bytes()).map_err(timed_out)?;
    let mut resp = String::new();
    BufReader::new(&stream)
        .read_line(&mut resp)
        .map_err(timed_out)?;
    let r: Response =
        serde_json::from_str(&resp).map_err(|e| ClientError::Decode(format!("{e}: {resp:?}")))?;
    Ok(r.into_result()?)
}
