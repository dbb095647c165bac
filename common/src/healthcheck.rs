//! `--healthcheck`: asks the server running on this host whether it is healthy, so a container
//! image without an HTTP client of its own (`FROM scratch`) can still have a `HEALTHCHECK`.
//!
//! The check sends `GET /-/healthy` over plain HTTP/1.1 to the address the server listens on
//! (an all-interfaces address such as `:8790` or `0.0.0.0:8790` is reached through loopback)
//! and succeeds on `200` only. A server behind TLS or basic auth from `--web.config.file`
//! answers it with an error, so such a deployment replaces or disables the image's check.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// How long connecting, sending and reading may each take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// The listen address has no port or cannot be resolved.
    #[error("invalid listen address {address:?}: {reason}")]
    Address {
        /// The listen address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection, or the exchange failed.
    #[error("{target}: {source}")]
    Io {
        /// Where the check connected.
        target: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The server answered, but not with `200`.
    #[error("{target}: /-/healthy answered {status_line:?}")]
    Unhealthy {
        /// Where the check connected.
        target: String,
        /// The first line of the answer.
        status_line: String,
    },
}

/// The `host:port` a check connects to for a listen address.
///
/// # Errors
/// When the address has no port.
pub fn connect_target(listen_address: &str) -> Result<String, HealthcheckError> {
    let invalid = |reason: &str| HealthcheckError::Address {
        address: listen_address.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = listen_address
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected HOST:PORT or :PORT"))?;
    if port.parse::<u16>().is_err() {
        return Err(invalid("the port is not a number from 0 to 65535"));
    }
    let host = match host {
        // The server binds every interface for these; loopback is one of them.
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    Ok(format!("{host}:{port}"))
}

/// Sends `GET /-/healthy` to the server listening on `listen_address`.
///
/// # Errors
/// When the address is invalid, nothing answers, or the answer is not `200`.
pub fn check(listen_address: &str) -> Result<(), HealthcheckError> {
    let target = connect_target(listen_address)?;
    let io = |source: std::io::Error| HealthcheckError::Io {
        target: target.clone(),
        source,
    };
    let addresses: Vec<_> = target
        .to_socket_addrs()
        .map_err(|e| HealthcheckError::Address {
            address: listen_address.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last_error = None;
    let mut stream = None;
    for address in &addresses {
        match TcpStream::connect_timeout(address, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        io(last_error.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
        }))
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let request = format!(
        "GET /-/healthy HTTP/1.1\r\nHost: {target}\r\nUser-Agent: stackmedic-healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    // Only the status line matters; a bounded read keeps a misbehaving peer from feeding the
    // check forever.
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !answer.contains(&b'\n') && answer.len() < 4096 {
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string();
    let mut words = status_line.split_whitespace();
    let healthy =
        words.next().is_some_and(|v| v.starts_with("HTTP/1.")) && words.next() == Some("200");
    if healthy {
        Ok(())
    } else {
        Err(HealthcheckError::Unhealthy {
            target,
            status_line,
        })
    }
}

/// Runs [`check`] for a binary's `--healthcheck` flag: prints the outcome and returns the exit
/// code container engines expect (0 healthy, 1 unhealthy).
pub fn run(name: &str, listen_address: &str) -> ExitCode {
    match check(listen_address) {
        Ok(()) => {
            println!("{name}: healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn all_interfaces_are_reached_through_loopback() {
        assert_eq!(connect_target(":8790").unwrap(), "127.0.0.1:8790");
        assert_eq!(connect_target("0.0.0.0:1").unwrap(), "127.0.0.1:1");
        assert_eq!(connect_target("[::]:8791").unwrap(), "[::1]:8791");
        assert_eq!(connect_target("127.0.0.1:8791").unwrap(), "127.0.0.1:8791");
        assert_eq!(connect_target("localhost:80").unwrap(), "localhost:80");
    }

    #[test]
    fn an_address_without_a_port_is_refused() {
        for bad in ["8790", "localhost", "host:port", ":70000"] {
            let err = connect_target(bad).unwrap_err();
            assert!(
                matches!(err, HealthcheckError::Address { .. }),
                "{bad}: {err}"
            );
        }
    }

    /// Serves one connection with `answer` and returns the request it read.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (address, handle)
    }

    #[test]
    fn a_200_is_healthy_and_the_request_asks_for_the_health_endpoint() {
        let (address, server) =
            serve_once("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nHealthy.\n");
        check(&address).unwrap();
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /-/healthy HTTP/1.1\r\n"),
            "{request}"
        );
    }

    #[test]
    fn any_other_answer_is_unhealthy() {
        let (address, server) =
            serve_once("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
        let err = check(&address).unwrap_err();
        server.join().unwrap();
        assert!(
            matches!(&err, HealthcheckError::Unhealthy { status_line, .. } if status_line == "HTTP/1.1 401 Unauthorized"),
            "{err}"
        );
        let (address, server) = serve_once("not http at all\r\n");
        assert!(matches!(
            check(&address).unwrap_err(),
            HealthcheckError::Unhealthy { .. }
        ));
        server.join().unwrap();
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = check(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(matches!(err, HealthcheckError::Io { .. }), "{err}");
    }
}
