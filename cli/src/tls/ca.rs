//! The local development CA: made once, in a directory of its own
//! (`ca.crt`, `ca.key`), and reused by every later `lamina tls dev-cert`,
//! so that a browser or curl told to trust it once trusts every
//! certificate made afterwards.

use super::{certificate_error, now};
use crate::CliError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The CA's certificate file in its directory.
const CERTIFICATE: &str = "ca.crt";
/// The CA's private key file in its directory.
const KEY: &str = "ca.key";
/// How long the CA is valid: ten years (a development machine's CA is
/// trusted once and should not expire under its user).
const VALIDITY: Duration = Duration::days(3653);
/// How far back a new certificate's validity starts, so that a peer whose
/// clock is a little behind (a guest booted from a snapshot) accepts it.
pub const BACKDATE: Duration = Duration::hours(1);

/// The development CA, loaded or just made.
pub struct DevCa {
    /// Its directory.
    pub dir: PathBuf,
    /// It signs the certificates.
    pub issuer: Issuer<'static, KeyPair>,
    /// The end of its validity: no certificate it signs can outlive it.
    pub not_after: OffsetDateTime,
    /// Whether this run made it.
    pub created: bool,
}

impl DevCa {
    /// Where the CA certificate is.
    pub fn certificate_path(&self) -> PathBuf {
        self.dir.join(CERTIFICATE)
    }
}

/// The CA's directory: `--ca-dir`, else `$XDG_DATA_HOME/lamina/dev-ca`,
/// else `~/.local/share/lamina/dev-ca`; absolute, so that the paths
/// printed work from anywhere.
pub fn directory(asked: Option<&Path>) -> Result<PathBuf, CliError> {
    let dir = match asked {
        Some(dir) => dir.to_path_buf(),
        None => {
            let xdg = std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute());
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute());
            let data = match (xdg, home) {
                (Some(xdg), _) => xdg,
                (None, Some(home)) => home.join(".local/share"),
                (None, None) => {
                    return Err(CliError::Project(String::from(
                        "neither XDG_DATA_HOME nor HOME is set to an absolute path: \
                         say where the development CA lives with --ca-dir DIR",
                    )))
                }
            };
            data.join("lamina").join("dev-ca")
        }
    };
    std::path::absolute(&dir).map_err(CliError::io(format!("{}", dir.display())))
}

/// Loads the CA in `dir`, or makes it there if the directory holds
/// neither of its files. Concurrent runs take turns (a lock on the
/// directory), so two of them never make two CAs.
pub fn load_or_create(dir: &Path) -> Result<DevCa, CliError> {
    if !dir.is_dir() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(CliError::io(format!("creating {}", parent.display())))?;
        }
        // Only its owner may list the CA's files.
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CliError::io(format!("creating {}", dir.display()))(e)),
        }
    }
    let lock = File::open(dir).map_err(CliError::io(format!("opening {}", dir.display())))?;
    lock.lock()
        .map_err(CliError::io(format!("locking {}", dir.display())))?;
    let certificate = dir.join(CERTIFICATE);
    let key = dir.join(KEY);
    match (certificate.exists(), key.exists()) {
        (true, true) => load(dir, &certificate, &key),
        (false, false) => create(dir, &certificate, &key),
        (has_certificate, _) => {
            let (present, missing) = if has_certificate {
                (&certificate, &key)
            } else {
                (&key, &certificate)
            };
            Err(CliError::Tls(format!(
                "the development CA in {} is incomplete: {} is there but {} is not; \
                 remove the directory to make a new CA (and trust the new one instead)",
                dir.display(),
                present.display(),
                missing.display()
            )))
        }
    }
}

/// Makes a new CA: an ECDSA P-256 key, and a certificate that may sign
/// server certificates (path length 0) and CRLs, for ten years.
fn create(dir: &Path, certificate_path: &Path, key_path: &Path) -> Result<DevCa, CliError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(certificate_error("generating the CA's key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(
        DnType::CommonName,
        format!("Lamina development CA ({})", hostname()),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = now();
    params.not_before = now - BACKDATE;
    params.not_after = now + VALIDITY;
    let certificate = params
        .self_signed(&key)
        .map_err(certificate_error("signing the CA's certificate"))?;
    // The key first: a certificate without its key would be useless.
    write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(certificate_path, certificate.pem().as_bytes(), 0o644)?;
    Ok(DevCa {
        dir: dir.to_path_buf(),
        not_after: params.not_after,
        issuer: Issuer::new(params, key),
        created: true,
    })
}

/// Reads the CA made by an earlier run (or put there by its user: any CA
/// certificate with a PKCS#8 ECDSA or RSA key), after checking that the
/// key is the certificate's, that the certificate is a CA's, and that it
/// has not expired.
fn load(dir: &Path, certificate_path: &Path, key_path: &Path) -> Result<DevCa, CliError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(CliError::io(format!("reading {}", path.display())))
    };
    let broken = |path: &Path, why: String| {
        CliError::Tls(format!(
            "{}: {why}; remove {} to make a new development CA",
            path.display(),
            dir.display()
        ))
    };
    let key_pem = read(key_path)?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| broken(key_path, format!("not a PKCS#8 ECDSA or RSA key ({e})")))?;
    if let Ok(metadata) = std::fs::metadata(key_path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "lamina: warning: {} can be read by others (chmod 600 it)",
                key_path.display()
            );
        }
    }
    let certificate_pem = read(certificate_path)?;
    let der = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes())
        .map_err(|e| broken(certificate_path, format!("not a PEM certificate ({e})")))?
        .1
        .contents;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| broken(certificate_path, format!("not an X.509 certificate ({e})")))?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(broken(
            key_path,
            format!("not the key of {}", certificate_path.display()),
        ));
    }
    if !parsed.is_ca() {
        return Err(broken(
            certificate_path,
            String::from("not a CA certificate"),
        ));
    }
    let not_after = parsed.validity().not_after.to_datetime();
    if not_after <= now() {
        return Err(broken(
            certificate_path,
            format!("the CA expired on {}", super::day(not_after)),
        ));
    }
    let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)
        .map_err(certificate_error("reading the CA's certificate"))?;
    Ok(DevCa {
        dir: dir.to_path_buf(),
        issuer,
        not_after,
        created: false,
    })
}

/// Writes `contents` to a file that must not exist yet, created with
/// `mode` (so a key is never readable by others, not even briefly).
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CliError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(CliError::io(format!("creating {}", path.display())))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(CliError::io(format!("writing {}", path.display())))
}

/// This machine's name, for the CA's name: whoever trusts several
/// machines' development CAs can tell them apart.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| String::from("unknown host"))
}
