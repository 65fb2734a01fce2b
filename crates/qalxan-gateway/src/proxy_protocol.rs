//! The PROXY protocol (HAProxy's, versions 1 and 2) on listeners behind a TCP load balancer:
//! the balancer writes a header naming the client before the first byte of HTTP or TLS, and
//! the gateway takes the client's address from it (for limits, bans, the WAF's REMOTE_ADDR,
//! logs and events) instead of the balancer's.
//!
//! The `ppp` crate parses; this module only reads exactly the header's bytes off the socket,
//! so what follows (a TLS handshake, an HTTP request) is left for the connection to read.
//! Only peers in `trusted_proxies` may send a header: anyone else could name any address.

use ppp::v2;
use ppp::HeaderResult;
use std::net::{IpAddr, SocketAddr};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Version 2's binary signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest header (the specification's bound), CRLF included.
const V1_MAX: usize = 107;
/// Version 2 allows 64 KiB of addresses and TLVs; balancers send a few hundred bytes.
pub const V2_MAX: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProxyHeaderError {
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("the PROXY protocol header is longer than {0} bytes")]
    TooLong(usize),
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("reading the PROXY protocol header: {0}")]
    Io(String),
}

/// Reads the header at the start of `stream`; the client's address it names, or `None` when
/// it names none (version 2 LOCAL, the balancer's own health checks; version 1 UNKNOWN).
pub(crate) async fn read_header(
    stream: &mut TcpStream,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let io = |e: std::io::Error| ProxyHeaderError::Io(e.to_string());
    let mut header = vec![0u8; 12];
    stream.read_exact(&mut header).await.map_err(io)?;
    if header == V2_SIGNATURE {
        header.resize(16, 0);
        stream.read_exact(&mut header[12..]).await.map_err(io)?;
        let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if 16 + length > V2_MAX {
            return Err(ProxyHeaderError::TooLong(V2_MAX));
        }
        header.resize(16 + length, 0);
        stream.read_exact(&mut header[16..]).await.map_err(io)?;
    } else if header.starts_with(b"PROXY ") {
        // Byte by byte to the line's end: a read past it would take the request's first bytes.
        let mut byte = [0u8; 1];
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(ProxyHeaderError::TooLong(V1_MAX));
            }
            stream.read_exact(&mut byte).await.map_err(io)?;
            header.push(byte[0]);
        }
    } else {
        return Err(ProxyHeaderError::Missing);
    }
    parse(&header)
}

/// The client's address in a complete header.
pub fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let malformed = |e: String| ProxyHeaderError::Malformed(e);
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        }),
        HeaderResult::V1(Err(e)) => Err(malformed(e.to_string())),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
        }),
        HeaderResult::V2(Err(e)) => Err(malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_name_the_client() {
        assert_eq!(
            parse(b"PROXY TCP4 203.0.113.7 192.0.2.10 51234 443\r\n"),
            Ok(Some("203.0.113.7:51234".parse().unwrap()))
        );
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n"),
            Ok(Some("[2001:db8::7]:51234".parse().unwrap()))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(None));
        let v2 = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "198.51.100.9:40000".parse::<SocketAddr>().unwrap(),
                "192.0.2.10:443".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        assert_eq!(parse(&v2), Ok(Some("198.51.100.9:40000".parse().unwrap())));
        let local = v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(parse(&local), Ok(None), "the balancer's own check");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"PROXY TCP4 999.1.1.1 192.0.2.10 1 2\r\n"[..],
            b"PROXY TCP4 203.0.113.7\r\n",
            b"PROXY SCTP 1 2 3 4\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x02ab",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyHeaderError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
