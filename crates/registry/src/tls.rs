//! TLS settings per registry: system roots plus `<certs_root>/<host>/*.crt`.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Loads the system's root certificates (errors on individual files are skipped, as other clients do).
pub(crate) fn system_roots() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// CA certificates from `<certs_root>/<registry>/*.crt`; a missing directory gives none.
pub(crate) fn registry_cas(
    certs_root: &Path,
    registry: &str,
) -> Result<Vec<CertificateDer<'static>>> {
    let paths = files_with_extension(&certs_root.join(registry), "crt")?;
    let mut out = Vec::new();
    for p in paths {
        let iter = CertificateDer::pem_file_iter(&p)
            .map_err(|e| Error::Config(format!("CA file {}: {e}", p.display())))?;
        for c in iter {
            out.push(c.map_err(|e| Error::Config(format!("CA file {}: {e}", p.display())))?);
        }
    }
    Ok(out)
}

/// The files of `dir` ending in `.ext`, sorted; none when the directory does not exist.
fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::io(
                format!("reading CA directory {}", dir.display()),
                e,
            ))
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    paths.sort();
    Ok(paths)
}

/// A client certificate chain and its key.
pub(crate) type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A client certificate from `<certs_root>/<registry>/<name>.cert` + `<name>.key` (docker's layout);
/// a `.cert` without its `.key` is an error.
pub(crate) fn registry_client_cert(
    certs_root: &Path,
    registry: &str,
) -> Result<Option<ClientCert>> {
    let certs = files_with_extension(&certs_root.join(registry), "cert")?;
    let Some(cert) = certs.into_iter().next() else {
        return Ok(None);
    };
    let key = cert.with_extension("key");
    if !key.exists() {
        return Err(Error::Config(format!(
            "client certificate {} has no key {}",
            cert.display(),
            key.display()
        )));
    }
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::Config(format!("client certificate {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| Error::Config(format!("client key {}: {e}", key.display())))?;
    Ok(Some((chain, key)))
}

/// A rustls client config trusting `roots` plus `extra`, presenting `client` when given.
pub(crate) fn client_config(
    roots: &[CertificateDer<'static>],
    extra: Vec<CertificateDer<'static>>,
    client: Option<ClientCert>,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut store = RootCertStore::empty();
    // System bundles sometimes hold certificates rustls rejects; skip those like other clients do.
    let _ = store.add_parsable_certificates(roots.iter().cloned());
    for c in extra {
        store
            .add(c)
            .map_err(|e| Error::Config(format!("unusable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(store);
    let cfg = match client {
        Some((chain, key)) => cfg
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Config(format!("unusable client certificate: {e}")))?,
        None => cfg.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The TLS failure in an error chain, if any.
pub(crate) fn tls_cause(err: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t.clone());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                    return Some(t.clone());
                }
            }
        }
        cur = e.source();
    }
    None
}

/// What the user can do about a TLS failure with a registry whose certificates live in `dir`.
pub(crate) fn tls_hint(err: &rustls::Error, dir: &Path) -> String {
    use rustls::CertificateError as C;
    let dir = dir.display();
    match err {
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "the server's certificate is not issued for this host name".into()
        }
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
            "the server's certificate has expired".into()
        }
        rustls::Error::InvalidCertificate(_) => format!(
            "the server's certificate is not trusted: for a private CA put its certificate in {dir}/*.crt, or use tls_verify=false"
        ),
        rustls::Error::AlertReceived(_) => format!(
            "the registry refused the handshake; if it requires a client certificate put <name>.cert and <name>.key in {dir}"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server does not seem to speak TLS; for a plain-HTTP registry use tls_verify=false (insecure registry)".into()
        }
        _ => format!("check the registry's TLS setup and {dir}"),
    }
}

/// A rustls client config that accepts any server certificate (still checking handshake signatures):
/// what `tls_verify=false` means for an HTTPS registry.
pub(crate) fn no_verify_config(client: Option<ClientCert>) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)));
    let cfg = match client {
        Some((chain, key)) => cfg
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Config(format!("unusable client certificate: {e}")))?,
        None => cfg.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
