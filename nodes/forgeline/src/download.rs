//! Package download for `forgeline model update`: a small blocking HTTP/1.1 GET over plain TCP
//! (`http://`) or TLS (`https://`, rustls with the `ring` provider). The server is verified
//! against the system trust store, the bundled Mozilla roots (`webpki-roots`) and, optionally, a
//! private CA given as a PEM file (`--ca-cert`). Connect and read timeouts, a maximum size, no redirects (a redirect is
//! refused, naming where it points), no chunked encoding (the size must be known).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a package is fetched.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Extra trusted CA certificates (PEM), added to the bundled roots; `None`: bundled roots only.
    pub ca_cert: Option<PathBuf>,
    /// Longest wait for the TCP connection, per resolved address.
    pub connect_timeout: Duration,
    /// Longest wait for any single read or write on the connection.
    pub read_timeout: Duration,
    /// Largest accepted package, bytes; a bigger one is refused before (or while) it is read.
    pub max_bytes: u64,
}

/// Why a download failed; every variant names the URL (or file) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The URL cannot be used.
    #[error(
        "{url}: unsupported URL: {reason} (expected http://host[:port]/path or https://host[:port]/path)"
    )]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("{url}: cannot resolve host `{host}` (DNS): {reason}")]
    Dns {
        /// The URL.
        url: String,
        /// The host name.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// No resolved address accepted the connection in time.
    #[error("{url}: cannot connect to {addr} (connect timeout {timeout_s} s): {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// The address(es) tried.
        addr: String,
        /// The connect timeout, seconds.
        timeout_s: f64,
        /// The last error.
        reason: String,
    },
    /// The `--ca-cert` file cannot be used.
    #[error("CA certificate file {path}: {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// The server's certificate does not verify (unknown issuer, wrong name, expired ...).
    #[error(
        "{url}: TLS verification of the server failed: {reason} (if the update server uses a private CA, pass its certificate with --ca-cert <pem>)"
    )]
    TlsVerification {
        /// The URL.
        url: String,
        /// rustls' reason.
        reason: String,
    },
    /// The TLS handshake failed for another reason (protocol, alert, connection closed).
    #[error("{url}: TLS handshake failed: {reason}")]
    Tls {
        /// The URL.
        url: String,
        /// The reason.
        reason: String,
    },
    /// A redirect: refused (pass the final URL).
    #[error(
        "{url}: server redirects ({status}) to `{location}`; redirects are refused: pass the final URL"
    )]
    Redirect {
        /// The URL.
        url: String,
        /// The status line.
        status: String,
        /// The `Location` header.
        location: String,
    },
    /// A status other than 200.
    #[error("{url}: server answered `{status}`, expected 200")]
    Status {
        /// The URL.
        url: String,
        /// The status line.
        status: String,
    },
    /// The package is bigger than the limit.
    #[error(
        "{url}: package is larger than the limit of {limit} bytes ({size}); raise --max-download-mb if it is expected"
    )]
    TooBig {
        /// The URL.
        url: String,
        /// The announced size (or "more than the limit" when read without a length).
        size: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// The answer is not usable HTTP.
    #[error("{url}: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the connection failed (timeout, reset, truncation).
    #[error("{url}: {what}: {reason}")]
    Io {
        /// The URL.
        url: String,
        /// What was being done.
        what: &'static str,
        /// The error.
        reason: String,
    },
    /// The destination file cannot be written.
    #[error("{path}: cannot write the download: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A parsed `http(s)://host[:port]/path` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, DownloadError> {
    let bad = |reason: &str| DownloadError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("the scheme must be http:// or https://"));
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed `[` in the host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad(&format!("port `{p}` is not a number 0..65535")))?,
        None if tls => 443,
        None => 80,
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("whitespace or control characters in the path"));
    }
    Ok(Url {
        tls,
        host: host.to_owned(),
        port,
        path,
    })
}

/// The TLS client configuration: the operating system's trust store (`SSL_CERT_FILE` /
/// `SSL_CERT_DIR` honoured), the bundled Mozilla roots, plus the certificates of `ca_cert`.
fn tls_config(ca_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, DownloadError> {
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::debug!("system trust store: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    tracing::debug!("system trust store: {added} roots ({ignored} unusable)");
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        let ca_err = |reason: String| DownloadError::CaCert {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_err(format!("cannot read PEM certificates: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_err(format!("bad PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(ca_err(
                "no `BEGIN CERTIFICATE` block found; expected PEM certificate(s)".into(),
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DownloadError::CaCert {
            path: ca_cert.map(Path::to_owned).unwrap_or_default(),
            reason: format!("TLS configuration: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection, plain or TLS.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn io_reason(e: &std::io::Error, read_timeout: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
            "no data within the read timeout of {} s",
            read_timeout.as_secs_f64()
        ),
        _ => e.to_string(),
    }
}

fn connect(url: &str, u: &Url, opts: &DownloadOptions) -> Result<TcpStream, DownloadError> {
    let addrs: Vec<SocketAddr> = (u.host.as_str(), u.port)
        .to_socket_addrs()
        .map_err(|e| DownloadError::Dns {
            url: url.to_owned(),
            host: u.host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(DownloadError::Dns {
            url: url.to_owned(),
            host: u.host.clone(),
            reason: "no address".into(),
        });
    }
    let mut last = String::new();
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, opts.connect_timeout) {
            Ok(s) => {
                let io = |e: std::io::Error| DownloadError::Io {
                    url: url.to_owned(),
                    what: "socket setup",
                    reason: e.to_string(),
                };
                s.set_read_timeout(Some(opts.read_timeout)).map_err(io)?;
                s.set_write_timeout(Some(opts.read_timeout)).map_err(io)?;
                return Ok(s);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(DownloadError::Connect {
        url: url.to_owned(),
        addr: addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        timeout_s: opts.connect_timeout.as_secs_f64(),
        reason: last,
    })
}

/// Completes the TLS handshake now, so a verification failure is reported as such.
fn handshake(
    url: &str,
    u: &Url,
    opts: &DownloadOptions,
    mut tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, DownloadError> {
    let config = tls_config(opts.ca_cert.as_deref())?;
    let name = ServerName::try_from(u.host.clone()).map_err(|e| DownloadError::Url {
        url: url.to_owned(),
        reason: format!("host `{}` is not a valid TLS server name: {e}", u.host),
    })?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| DownloadError::Tls {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            let tls = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            return Err(match tls {
                Some(
                    err @ (rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented),
                ) => DownloadError::TlsVerification {
                    url: url.to_owned(),
                    reason: err.to_string(),
                },
                Some(err) => DownloadError::Tls {
                    url: url.to_owned(),
                    reason: err.to_string(),
                },
                None => DownloadError::Tls {
                    url: url.to_owned(),
                    reason: io_reason(&e, opts.read_timeout),
                },
            });
        }
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Largest accepted response header.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// Downloads `url` (`http://` or `https://`) into `out`; returns the number of bytes written.
/// Only a `200` answer is accepted; redirects and chunked encoding are refused.
pub fn download(
    url: &str,
    out: &mut std::fs::File,
    out_path: &Path,
    opts: &DownloadOptions,
) -> Result<u64, DownloadError> {
    let u = parse_url(url)?;
    let tcp = connect(url, &u, opts)?;
    let mut conn: Box<dyn Conn> = if u.tls {
        Box::new(handshake(url, &u, opts, tcp)?)
    } else {
        Box::new(tcp)
    };
    let io = |what: &'static str| {
        move |e: std::io::Error| DownloadError::Io {
            url: url.to_owned(),
            what,
            reason: io_reason(&e, opts.read_timeout),
        }
    };
    let host_header = if (u.tls && u.port == 443) || (!u.tls && u.port == 80) {
        u.host.clone()
    } else {
        format!("{}:{}", u.host, u.port)
    };
    write!(
        conn,
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\nUser-Agent: forgeline/{}\r\nAccept-Encoding: identity\r\n\r\n",
        u.path,
        env!("CARGO_PKG_VERSION")
    )
    .and_then(|()| conn.flush())
    .map_err(io("cannot send the request"))?;

    let mut reader = BufReader::new(conn);
    let mut head = Vec::new();
    let mut header_budget = MAX_HEADER_BYTES;
    loop {
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(header_budget)
            .read_until(b'\n', &mut line)
            .map_err(io("cannot read the answer's header"))?;
        if n == 0 {
            return Err(DownloadError::Protocol {
                url: url.to_owned(),
                reason: if head.is_empty() {
                    "connection closed without an answer".into()
                } else {
                    format!("header larger than {MAX_HEADER_BYTES} bytes or cut short")
                },
            });
        }
        header_budget -= n as u64;
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            break;
        }
        head.push(text);
    }
    let status = head.first().cloned().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    let header = |name: &str| {
        head.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if code.starts_with('3') {
        return Err(DownloadError::Redirect {
            url: url.to_owned(),
            status: status.clone(),
            location: header("location").unwrap_or_default(),
        });
    }
    if code != "200" {
        return Err(DownloadError::Status {
            url: url.to_owned(),
            status,
        });
    }
    if header("transfer-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity")) {
        return Err(DownloadError::Protocol {
            url: url.to_owned(),
            reason:
                "chunked/encoded transfer is not supported; serve the file with a Content-Length"
                    .into(),
        });
    }
    let length = match header("content-length") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| DownloadError::Protocol {
            url: url.to_owned(),
            reason: format!("Content-Length `{v}` is not a number"),
        })?),
        None => None,
    };
    if let Some(n) = length
        && n > opts.max_bytes
    {
        return Err(DownloadError::TooBig {
            url: url.to_owned(),
            size: format!("Content-Length {n}"),
            limit: opts.max_bytes,
        });
    }
    let cap = length.unwrap_or(opts.max_bytes + 1);
    let mut body = (&mut reader).take(cap);
    let mut buf = vec![0_u8; 64 * 1024];
    let mut written = 0_u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("download interrupted")(e)),
        };
        written += n as u64;
        if written > opts.max_bytes {
            return Err(DownloadError::TooBig {
                url: url.to_owned(),
                size: "no Content-Length, more than the limit read".into(),
                limit: opts.max_bytes,
            });
        }
        out.write_all(&buf[..n])
            .map_err(|source| DownloadError::Write {
                path: out_path.to_owned(),
                source,
            })?;
    }
    if let Some(n) = length
        && written != n
    {
        return Err(DownloadError::Io {
            url: url.to_owned(),
            what: "truncated download",
            reason: format!("{written} of {n} bytes"),
        });
    }
    out.flush()
        .and_then(|()| out.sync_all())
        .map_err(|source| DownloadError::Write {
            path: out_path.to_owned(),
            source,
        })?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports_and_are_refused_with_the_reason() {
        let u = parse_url("https://updates.plant.local/m/p.tar").unwrap();
        assert_eq!(
            u,
            Url {
                tls: true,
                host: "updates.plant.local".into(),
                port: 443,
                path: "/m/p.tar".into()
            }
        );
        let u = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8080, "/"));
        let u = parse_url("https://[::1]:9443/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9443));
        for (bad, why) in [
            ("ftp://h/x", "scheme"),
            ("https://:443/x", "no host"),
            ("http://h:99999/x", "port"),
            ("https://user:pw@h/x", "credentials"),
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(why), "{e}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let e = tls_config(Some(Path::new("/nonexistent/ca.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
