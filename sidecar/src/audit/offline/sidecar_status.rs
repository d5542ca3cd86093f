//! The running sidecar's invalidation-lag histogram, read from its `/status` on
//! `[admin] listen` with one HTTP/1.0 request (no client library needed).

use crate::audit::report::InvalidationLag;
use std::time::Duration;

/// Why the invalidation lag could not be read (a note in the report, not a failed
/// audit: the audit runs without a sidecar too).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// `[admin] listen` is empty.
    #[error("no sidecar reachable ([admin] listen is off)")]
    Off,
    /// Connecting, sending or reading failed.
    #[error("no sidecar reachable at {url} ({source})")]
    Io {
        /// `http://HOST:PORT/status`.
        url: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("no sidecar reachable at {url} (timeout)")]
    Timeout {
        /// `http://HOST:PORT/status`.
        url: String,
    },
    /// The answer is not a 200 with a JSON body carrying the histogram.
    #[error("{url}: {what}")]
    Answer {
        /// `http://HOST:PORT/status`.
        url: String,
        /// What was wrong with it.
        what: String,
    },
}

/// A listen address as a client reaches it: a wildcard host (`0.0.0.0`, `[::]`,
/// `::`, or none: `:6379`) is reached on loopback; any other address is kept.
pub fn reachable(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0" | "" | "*", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]" | "::" | "[::0]", port)) => format!("[::1]:{port}"),
        _ => listen.to_string(),
    }
}

/// `GET /status` on `listen` and its `audit.invalidation_lag`.
pub(super) async fn invalidation_lag(listen: &str) -> Result<InvalidationLag, StatusError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if listen.is_empty() {
        return Err(StatusError::Off);
    }
    let addr = reachable(listen);
    let url = format!("http://{addr}/status");
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(format!("GET /status HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        // A status page is small; a bound keeps a wrong port from filling memory.
        s.take(16 << 20).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = match tokio::time::timeout(Duration::from_secs(3), fetch).await {
        Ok(Ok(b)) => b,
        Ok(Err(source)) => return Err(StatusError::Io { url, source }),
        Err(_) => return Err(StatusError::Timeout { url }),
    };
    let answer = |what: String| StatusError::Answer {
        url: url.clone(),
        what,
    };
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| answer("not an HTTP response".into()))?;
    if !head.starts_with("HTTP/1.") || head.split(' ').nth(1) != Some("200") {
        return Err(answer(format!(
            "answered {}",
            head.lines().next().unwrap_or("")
        )));
    }
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| answer(format!("not JSON ({e})")))?;
    let lag = v
        .get("audit")
        .and_then(|a| a.get("invalidation_lag"))
        .filter(|l| !l.is_null())
        .ok_or_else(|| answer("no audit.invalidation_lag ([audit] sample = 0?)".into()))?;
    let mut lag: InvalidationLag = serde_json::from_value(lag.clone())
        .map_err(|e| answer(format!("audit.invalidation_lag: {e}")))?;
    lag.source = url;
    Ok(lag)
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn wildcards_are_reached_on_loopback() {
        assert_eq!(reachable("0.0.0.0:6380"), "127.0.0.1:6380");
        assert_eq!(reachable(":6380"), "127.0.0.1:6380");
        assert_eq!(reachable("[::]:9090"), "[::1]:9090");
        assert_eq!(reachable("10.0.0.5:6380"), "10.0.0.5:6380");
        assert_eq!(reachable("[::1]:6380"), "[::1]:6380");
        assert_eq!(reachable("localhost:6380"), "localhost:6380");
    }
}
