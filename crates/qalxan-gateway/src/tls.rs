//! TLS on the gateway's listeners: certificates belong to sites, as nginx's belong to server
//! blocks, and the client's SNI name picks the site's certificate (exact names first, then
//! `*.` wildcards, then the first site that has one). The resolver reads the current site set,
//! so a reload also replaces certificates without touching open connections.

use crate::sites::Current;
use crate::{GatewayError, Site};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub(crate) struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Certificates {
    pub fn load(sites: &[Site]) -> Result<Certificates, GatewayError> {
        let mut out = Certificates::default();
        let mut loaded: HashMap<(std::path::PathBuf, std::path::PathBuf), Arc<CertifiedKey>> =
            HashMap::new();
        for site in sites {
            let Some(files) = &site.certificate else {
                continue;
            };
            let key = (files.cert.clone(), files.key.clone());
            let certified = match loaded.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(certified_key(&files.cert, &files.key)?);
                    loaded.insert(key, c.clone());
                    c
                }
            };
            for host in &site.hosts {
                match host.strip_prefix("*.") {
                    Some(parent) => out.wildcard.entry(parent.to_owned()),
                    None => out.exact.entry(host.clone()),
                }
                .or_insert_with(|| certified.clone());
            }
            out.default.get_or_insert(certified);
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.default.is_none()
    }

    fn find(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = self.exact.get(&name) {
                return Some(c.clone());
            }
            let mut rest = name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(c) = self.wildcard.get(parent) {
                    return Some(c.clone());
                }
                rest = parent;
            }
        }
        self.default.clone()
    }
}

fn certified_key(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<CertifiedKey, GatewayError> {
    let bad = |path: &std::path::Path, message: String| GatewayError::Tls {
        path: path.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no PEM certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| bad(key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| {
        bad(
            key,
            format!("the key does not belong to {}: {e}", cert.display()),
        )
    })?;
    Ok(certified)
}

#[derive(Debug)]
struct Resolver(Arc<Current>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().certificates.find(hello.server_name())
    }
}

/// The TLS settings of every TLS listener: HTTP/2 and HTTP/1.1 offered by ALPN.
pub(crate) fn acceptor(current: Arc<Current>) -> Result<tokio_rustls::TlsAcceptor, GatewayError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::TlsSetup(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(current)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The TLS client settings for https upstreams: the web's roots plus `extra` (a PEM file of
/// the institution's own authorities, for internal servers).
pub(crate) fn client_config(
    extra: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, GatewayError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra {
        let bad = |message: String| GatewayError::Tls {
            path: path.to_path_buf(),
            message,
        };
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::TlsSetup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
