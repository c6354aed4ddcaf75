//! Bakes the roots the image trusts besides the Mozilla ones: the PEM file
//! that `LAMINA_TLS_CA` names at build time (a private or test CA), or none.
//! Roots are part of the image; nothing is fetched or read at boot.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LAMINA_TLS_CA");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("EXTRA_CA.rs");
    let code = match std::env::var("LAMINA_TLS_CA") {
        Err(_) => String::from(
            "/// No LAMINA_TLS_CA at build time: the Mozilla roots only.\n\
             pub static EXTRA_CA: &[u8] = b\"\";\n",
        ),
        Ok(path) => {
            let path = std::fs::canonicalize(&path).unwrap_or_else(|e| {
                eprintln!("error: LAMINA_TLS_CA={path}: {e}");
                std::process::exit(1)
            });
            println!("cargo:rerun-if-changed={}", path.display());
            let text = std::fs::read(&path).unwrap_or_else(|e| {
                eprintln!("error: LAMINA_TLS_CA={}: {e}", path.display());
                std::process::exit(1)
            });
            if !text
                .windows(27)
                .any(|w| w == b"-----BEGIN CERTIFICATE-----")
            {
                eprintln!(
                    "error: LAMINA_TLS_CA={}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                    path.display()
                );
                std::process::exit(1);
            }
            format!(
                "/// The CA certificates of LAMINA_TLS_CA ({0:?}) at build time.\n\
                 pub static EXTRA_CA: &[u8] = include_bytes!({0:?});\n",
                path.display().to_string()
            )
        }
    };
    std::fs::write(out, code).expect("cannot write EXTRA_CA.rs");
}
