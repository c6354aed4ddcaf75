//! The server's identities: certificate chains with their private keys, and
//! the choice among them by the name the client asks for (SNI).

use crate::TlsError;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use lamina_core::device::KvRead;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// One certificate chain (leaf first) and its private key.
#[derive(Debug, Clone)]
struct Identity {
    /// Where it came from, for messages (`site` for `site.crt`/`site.key`).
    name: String,
    key: Arc<CertifiedKey>,
}

/// Certificates and keys a [`crate::TlsAcceptor`] serves, chosen per
/// connection by the client's server name (SNI) and the signature schemes it
/// supports (an ECDSA and an RSA certificate may serve the same name).
///
/// With no SNI, or a name none of them covers, the first identity answers,
/// as nginx's default server does.
///
/// ```text
/// let mut ids = Identities::new();
/// ids.add_pem("site", CHAIN_PEM, KEY_PEM)?;   // or Identities::from_kv(&BAKED).await?
/// ```
#[derive(Debug, Default, Clone)]
pub struct Identities {
    list: Vec<Identity>,
}

impl Identities {
    /// No identities yet.
    pub fn new() -> Self {
        Identities::default()
    }

    /// How many identities there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds the chain in `chain_pem` (PEM certificates, the leaf first) with
    /// the private key in `key_pem` (PKCS#8, SEC1 or PKCS#1 PEM; ECDSA P-256
    /// or P-384, RSA of 2048 bits or more, Ed25519). The key must belong to
    /// the leaf.
    pub fn add_pem(
        &mut self,
        name: &str,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<(), TlsError> {
        let key = certified_key(name, chain_pem, key_pem)?;
        self.list.push(Identity {
            name: name.to_string(),
            key: Arc::new(key),
        });
        Ok(())
    }

    /// Every `NAME.crt` with its `NAME.key` under `prefix` in `store` (a
    /// baked directory, or any key-value store), in key order; the first is
    /// the default. A `.crt` without its `.key` (or the reverse) is an error,
    /// as is a store with none.
    pub async fn from_kv<K: KvRead>(store: &K, prefix: &str) -> Result<Self, TlsError> {
        let entries = store
            .list(prefix)
            .await
            .map_err(|e| TlsError::Identity(format!("cannot list {prefix:?}: {e}")))?;
        let mut ids = Identities::new();
        for entry in &entries {
            let Some(stem) = entry.key.strip_suffix(".crt") else {
                if let Some(stem) = entry.key.strip_suffix(".key") {
                    if !entries.iter().any(|e| e.key == format!("{stem}.crt")) {
                        return Err(TlsError::Identity(format!(
                            "{}: no {stem}.crt for this key",
                            entry.key
                        )));
                    }
                }
                continue;
            };
            let key_name = format!("{stem}.key");
            let read = |key: String| async move {
                store
                    .get(&key)
                    .await
                    .map_err(|e| TlsError::Identity(format!("{key}: {e}")))
            };
            let chain = read(entry.key.clone()).await?;
            let key = read(key_name).await?;
            let name = stem.rsplit('/').next().unwrap_or(stem);
            ids.add_pem(name, chain.as_ref(), key.as_ref())?;
        }
        if ids.is_empty() {
            return Err(TlsError::Identity(format!(
                "no certificate (NAME.crt with NAME.key) under {prefix:?}"
            )));
        }
        Ok(ids)
    }

    /// The names of the identities, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|i| i.name.as_str())
    }

    /// The identity for `server_name` (None: the client sent no SNI) whose
    /// key can sign with one of `schemes`.
    fn choose(
        &self,
        server_name: Option<&str>,
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let can_sign = |id: &&Identity| id.key.key.choose_scheme(schemes).is_some();
        let covers = |id: &&Identity| match server_name {
            Some(name) => covers_name(&id.key, name),
            None => false,
        };
        self.list
            .iter()
            .filter(covers)
            .find(can_sign)
            .or_else(|| self.list.iter().find(can_sign))
            .map(|id| id.key.clone())
    }
}

/// Whether `name` is one of the leaf certificate's subject names (wildcards
/// as RFC 6125 allows them), as webpki checks it on the client side.
fn covers_name(key: &CertifiedKey, name: &str) -> bool {
    let (Some(leaf), Ok(name)) = (key.cert.first(), ServerName::try_from(name)) else {
        return false;
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

/// Parses a chain and its key and checks that the key belongs to the leaf.
/// The one place a certificate is read: the build-time check uses it too.
pub(crate) fn certified_key(
    name: &str,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let bad = |what: &str| TlsError::Identity(format!("{name}: {what}"));
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no PEM certificate in the chain file"));
    }
    webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| bad(&format!("leaf certificate: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad(&format!("private key: {e}")))?;
    let provider = crate::provider::provider();
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(&format!("private key: {e}")))?;
    let certified = CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(|_| bad("the private key does not belong to the leaf certificate"))?;
    Ok(certified)
}

/// Chooses the identity for each handshake.
#[derive(Debug)]
pub(crate) struct Resolver(pub(crate) Identities);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0
            .choose(hello.server_name(), hello.signature_schemes())
    }
}
