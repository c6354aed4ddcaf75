//! `lamina new`: a runnable project from a template.

use crate::project::lamina_root;
use crate::CliError;
use std::path::Path;

const MAIN_RS: &str = r#"//! {{name}}: a Lamina application.
//!
//! Build and run it as a Linux process with `lamina run`; pass boot
//! arguments after `--`, e.g. `lamina run -- --times=5`.
#![no_std]
#![no_main]

use lamina::prelude::*;

lamina::devices! {
    /// The devices {{name}} uses, declared once: `main` receives them typed,
    /// unikernel images list them in their manifest and `lamina describe`
    /// draws them. Add `service: Stack` for networking, `storage: Block`
    /// for a disk.
    pub struct Devices {
        console: Console,
    }
}

lamina::boot_args! {
    /// {{name}}
    pub struct Args {
        /// Whom to greet.
        pub who: String = "world",
        /// How many greetings, one a second.
        pub times: u32 = "3",
    }
}

async fn main<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) {
    let console = devices.console;
    for i in 1..=args.times {
        console.write_line(&format!("Hello, {}! ({i}/{})", args.who, args.times));
        if i < args.times {
            env.sleep(Duration::from_secs(1)).await;
        }
    }
}

lamina::main!(main);
"#;

const CARGO_TOML: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2021"
publish = false

# The target supplies `main`, so `cargo test` must not build a test harness
# for the application binary.
[[bin]]
name = "{{name}}"
path = "src/main.rs"
test = false

[dependencies]
lamina = { path = "{{lamina}}" }

# A project of its own, even when created inside another workspace.
[workspace]
"#;

/// Creates the application `name` in `path` (default `./name`).
pub fn create(name: &str, path: Option<&Path>) -> Result<(), CliError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(CliError::Project(format!(
            "invalid name '{name}': use letters, digits, '-' and '_', starting with a letter"
        )));
    }
    let dir = path.map(Path::to_path_buf).unwrap_or_else(|| name.into());
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(CliError::Project(format!(
            "{} already exists and is not empty",
            dir.display()
        )));
    }
    let lamina = lamina_root().join("lamina");
    let lamina = lamina
        .to_str()
        .ok_or_else(|| CliError::Project("Lamina's path is not UTF-8".into()))?;
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{lamina}}", lamina)
    };
    std::fs::create_dir_all(dir.join("src"))
        .map_err(CliError::io(format!("cannot create {}", dir.display())))?;
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/main.rs", fill(MAIN_RS)),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text)
            .map_err(CliError::io(format!("cannot write {}", path.display())))?;
    }
    eprintln!("lamina: created {name} in {}", dir.display());
    eprintln!("next: cd {} && lamina run", dir.display());
    Ok(())
}
