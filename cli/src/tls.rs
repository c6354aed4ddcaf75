//! `lamina tls dev-cert NAME...`: a certificate and key for serving HTTPS
//! in development, signed by a local development CA made on first use, so
//! that the tutorial needs no openssl commands. `lamina tls dev-ca` prints
//! the CA certificate's path, for `curl --cacert "$(lamina tls dev-ca)"`.
//!
//! The certificates are made with rcgen on ring, on the host only; the
//! unikernel reads the files it is given.

mod ca;
mod names;

use crate::CliError;
use ca::DevCa;
use names::Name;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rsa::pkcs8::EncodePrivateKey;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The most days a certificate may be valid: what Apple's platforms accept
/// for a server certificate from a CA their user added.
pub const MAX_DAYS: u32 = 825;

/// The size of an RSA key made with `--rsa`.
const RSA_BITS: usize = 2048;

/// What `lamina tls dev-cert` was asked for.
pub struct DevCertRequest {
    /// The names, as given; the first is the subject's CN and the files'.
    pub names: Vec<String>,
    /// Where to write the certificate and key.
    pub dir: PathBuf,
    /// An RSA 2048 key instead of ECDSA P-256.
    pub rsa: bool,
    /// Days of validity.
    pub days: u32,
    /// The CA's directory, if not the default.
    pub ca_dir: Option<PathBuf>,
    /// Replace existing files.
    pub force: bool,
}

/// `lamina tls dev-cert`: checks the names, loads or makes the CA, signs a
/// new key's certificate and writes both, then says how to trust the CA.
pub fn dev_cert(request: &DevCertRequest) -> Result<(), CliError> {
    let names = parse_names(&request.names)?;
    let stem = names[0].file_stem();
    let certificate_path = request.dir.join(format!("{stem}.crt"));
    let key_path = request.dir.join(format!("{stem}.key"));
    if !request.force {
        if let Some(existing) = [&certificate_path, &key_path]
            .into_iter()
            .find(|p| p.symlink_metadata().is_ok())
        {
            return Err(CliError::Project(format!(
                "{} exists: pass --force to replace it (and its key or certificate)",
                existing.display()
            )));
        }
    }
    let ca = ca::load_or_create(&ca::directory(request.ca_dir.as_deref())?)?;
    if ca.created {
        eprintln!(
            "lamina: made a development CA in {} (once; it signs every certificate \
             lamina tls dev-cert makes here)",
            ca.dir.display()
        );
    }

    let key = if request.rsa {
        rsa_key()?
    } else {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(certificate_error("generating the key"))?
    };
    let params = leaf_params(&names, request.rsa, request.days, &ca)?;
    let certificate = params
        .signed_by(&key, &ca.issuer)
        .map_err(certificate_error("signing the certificate"))?;

    std::fs::create_dir_all(&request.dir)
        .map_err(CliError::io(format!("creating {}", request.dir.display())))?;
    if request.force {
        for path in [&certificate_path, &key_path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CliError::io(format!("replacing {}", path.display()))(e)),
            }
        }
    }
    ca::write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    ca::write_new(&certificate_path, certificate.pem().as_bytes(), 0o644)?;

    report(&names, request, &params, &certificate_path, &key_path, &ca);
    Ok(())
}

/// `lamina tls dev-ca`: the CA certificate's path, on standard output.
pub fn dev_ca(ca_dir: Option<&Path>) -> Result<(), CliError> {
    let ca = ca::load_or_create(&ca::directory(ca_dir)?)?;
    if ca.created {
        eprintln!("lamina: made a development CA in {}", ca.dir.display());
    }
    println!("{}", ca.certificate_path().display());
    Ok(())
}

/// Every NAME checked, none twice; the first error names its NAME.
fn parse_names(texts: &[String]) -> Result<Vec<Name>, CliError> {
    let mut names: Vec<Name> = Vec::with_capacity(texts.len());
    for text in texts {
        let name = Name::parse(text)
            .map_err(|why| CliError::Project(format!("bad certificate name '{text}': {why}")))?;
        if names.contains(&name) {
            return Err(CliError::Project(format!("'{text}' is given twice")));
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err(CliError::Project(String::from(
            "lamina tls dev-cert NAME...: give the names to certify, like example.test 127.0.0.1",
        )));
    }
    Ok(names)
}

/// The server certificate: every name in subjectAltName (the first also
/// the CN), CA:FALSE, digitalSignature (and keyEncipherment for RSA, for
/// TLS 1.2's RSA key exchange clients), serverAuth, valid from an hour ago
/// for `days` days but never past the CA's end.
fn leaf_params(
    names: &[Name],
    rsa: bool,
    days: u32,
    ca: &DevCa,
) -> Result<CertificateParams, CliError> {
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].to_string());
    for name in names {
        params.subject_alt_names.push(match name {
            Name::Dns(dns) => SanType::DnsName(
                dns.clone()
                    .try_into()
                    .map_err(certificate_error(format!("the name {dns}")))?,
            ),
            Name::Ip(ip) => SanType::IpAddress(*ip),
        });
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if rsa {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = now();
    params.not_before = now - ca::BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    if params.not_after > ca.not_after {
        eprintln!(
            "lamina: warning: the development CA expires on {}: the certificate ends then too",
            day(ca.not_after)
        );
        params.not_after = ca.not_after;
    }
    Ok(params)
}

/// A new RSA 2048 key. ring, rcgen's backend, signs with RSA keys but
/// cannot make them, so the `rsa` crate makes it.
fn rsa_key() -> Result<KeyPair, CliError> {
    let mut rng = getrandom::SysRng;
    let private = rsa::PrivateKey::new(&mut rng, RSA_BITS)
        .map_err(|e| CliError::Tls(format!("generating an RSA key: {e}")))?;
    let der = private
        .to_pkcs8_der()
        .map_err(|e| CliError::Tls(format!("encoding the RSA key: {e}")))?;
    KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &PKCS_RSA_SHA256)
        .map_err(certificate_error("reading the RSA key"))
}

/// Says what was written and how to make clients trust it.
fn report(
    names: &[Name],
    request: &DevCertRequest,
    params: &CertificateParams,
    certificate_path: &Path,
    key_path: &Path,
    ca: &DevCa,
) {
    let listed: Vec<String> = names.iter().map(Name::to_string).collect();
    let ca_certificate = ca.certificate_path();
    eprintln!(
        "lamina: wrote {} (for {}; {}; valid until {})",
        certificate_path.display(),
        listed.join(", "),
        if request.rsa {
            "RSA 2048"
        } else {
            "ECDSA P-256"
        },
        day(params.not_after)
    );
    eprintln!(
        "lamina: wrote {} (its private key, PKCS#8, readable by you only)",
        key_path.display()
    );
    eprintln!(
        "lamina: signed by the development CA {}; to trust it:\n  \
         curl --cacert {} {}\n  \
         Chromium (its NSS database; certutil is in libnss3-tools): \
         certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n 'Lamina development CA' -i {}",
        ca_certificate.display(),
        ca_certificate.display(),
        names[0].example_url(),
        ca_certificate.display()
    );
}

/// Now, to the second (certificates hold no finer time).
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// A date as YYYY-MM-DD.
fn day(at: OffsetDateTime) -> String {
    format!("{}-{:02}-{:02}", at.year(), u8::from(at.month()), at.day())
}

/// Wraps an rcgen error with what was being done.
fn certificate_error(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CliError {
    let what = what.into();
    move |e| CliError::Tls(format!("{what}: {e}"))
}
