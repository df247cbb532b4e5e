//! `kiln health`: asks a running server whether it is ready (`GET /v2/health/ready`) and
//! exits 0 only if it is, so a container's health check needs no HTTP client of its own.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::cli::HealthArgs;

/// The longest answer read; readiness answers are a few hundred bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Why the server at an address is not answering ready.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("--timeout-secs must be a positive number, not {0}")]
    Timeout(f64),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} is not ready: HTTP {status}")]
    NotReady { addr: SocketAddr, status: String },
    #[error("{addr} did not answer HTTP: '{answer}'")]
    NotHttp { addr: SocketAddr, answer: String },
}

pub fn run(args: &HealthArgs) -> Result<(), ProbeError> {
    let timeout = Duration::try_from_secs_f64(args.timeout_secs)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or(ProbeError::Timeout(args.timeout_secs))?;
    probe(args.http_addr, timeout, args.api_key.as_deref())
}

/// `Ok` when the server at `addr` answers 200 on its readiness route within `timeout`. A
/// wildcard listen address (`0.0.0.0`, `[::]`) is asked on loopback.
pub fn probe(addr: SocketAddr, timeout: Duration, api_key: Option<&str>) -> Result<(), ProbeError> {
    let addr = loopback_if_wildcard(addr);
    let io = |source| ProbeError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io)?;
    let authorization = api_key
        .map(|key| format!("Authorization: Bearer {key}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /v2/health/ready HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let status_line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(status) => Err(ProbeError::NotReady {
            addr,
            status: status.to_string(),
        }),
        None => Err(ProbeError::NotHttp {
            addr,
            answer: status_line.trim().to_string(),
        }),
    }
}

fn loopback_if_wildcard(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_asked_on_loopback() {
        assert_eq!(
            loopback_if_wildcard("0.0.0.0:8000".parse().unwrap()),
            "127.0.0.1:8000".parse().unwrap()
        );
        assert_eq!(
            loopback_if_wildcard("[::]:8000".parse().unwrap()),
            "[::1]:8000".parse().unwrap()
        );
        assert_eq!(
            loopback_if_wildcard("10.1.2.3:8000".parse().unwrap()),
            "10.1.2.3:8000".parse().unwrap()
        );
    }
}
