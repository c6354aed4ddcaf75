//! Bakes `site/` into the image: the files become read-only data, with their
//! media types and ETags computed here, at build time.
//!
//! Also bakes the certificates for HTTPS from `tls/` (or the directory
//! `LAMINA_TLS_DIR` names): `NAME.crt` (PEM chain, leaf first) with
//! `NAME.key`, checked here so that a bad pair fails the build. Without that
//! directory the image has no certificate and serves HTTP only; nothing is
//! ever generated here (`lamina tls dev-cert NAME` makes a development one).
use std::path::Path;

fn main() {
    if let Err(e) = lamina_crunch::bake("site", "SITE") {
        panic!("cannot bake the site: {e}");
    }
    println!("cargo:rerun-if-env-changed=LAMINA_TLS_DIR");
    // Set when certificates are baked: the HTTPS code is compiled in.
    println!("cargo::rustc-check-cfg=cfg(website_https)");
    let dir = std::env::var("LAMINA_TLS_DIR").unwrap_or_else(|_| "tls".to_owned());
    if !Path::new(&dir).is_dir() {
        // Cargo counts a missing path as changed on every build (the image
        // was rebuilt each time: Jitsu built it once per service), so watch
        // the directory it would appear in instead.
        let parent = Path::new(&dir)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        println!("cargo:rerun-if-changed={}", parent.display());
        if std::env::var_os("LAMINA_TLS_DIR").is_some() {
            eprintln!("error: LAMINA_TLS_DIR={dir}: not a directory");
            std::process::exit(1);
        }
        let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("CERTS.rs");
        let none =
            "// No certificate directory at build time: HTTP only, and no TLS code in the image.\n";
        std::fs::write(out, none).expect("cannot write CERTS.rs");
        return;
    }
    println!("cargo:rerun-if-changed={dir}");
    if let Err(e) = lamina_tls::check::check_dir(Path::new(&dir)) {
        eprintln!("error: certificates for HTTPS: {e}");
        std::process::exit(1);
    }
    if let Err(e) = lamina_crunch::bake(&dir, "CERTS") {
        panic!("cannot bake the certificates: {e}");
    }
    println!("cargo::rustc-cfg=website_https");
}
