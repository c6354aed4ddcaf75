//! An application on disk: its directory and name. (Its devices are
//! declared in its source, `lamina::devices!`, and read from what it builds
//! into: see [`crate::declared`].)

use crate::CliError;
use std::path::{Path, PathBuf};

/// Where this copy of Lamina lives, for examples and new projects' paths.
pub fn lamina_root() -> PathBuf {
    if let Some(root) = std::env::var_os("LAMINA_HOME") {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// An application found on disk.
#[derive(Debug, Clone)]
pub struct Project {
    /// Package name (also the binary's).
    pub name: String,
    /// Directory holding its Cargo.toml.
    pub dir: PathBuf,
}

impl Project {
    /// Finds the application `app`: a directory with a Cargo.toml, or the
    /// name of one of Lamina's examples.
    pub fn find(app: &str) -> Result<Project, CliError> {
        let given = PathBuf::from(app);
        let example = lamina_root().join("examples").join(app);
        // A library crate of the same name (`dns` in Lamina's own tree) is
        // not an application: the example is meant.
        let is_application = |dir: &Path| dir.join("src/main.rs").is_file();
        let prefer_example =
            !app.contains('/') && example.join("Cargo.toml").is_file() && !is_application(&given);
        let dir = if given.join("Cargo.toml").is_file() && !prefer_example {
            given
        } else {
            if !app.contains('/') && example.join("Cargo.toml").is_file() {
                example
            } else {
                return Err(CliError::Project(format!(
                    "no application at '{app}': expected a directory with a Cargo.toml, or an example name ({})",
                    example_names().join(", ")
                )));
            }
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| CliError::Project(format!("{}: {e}", dir.display())))?;
        Self::load(&dir)
    }

    fn load(dir: &Path) -> Result<Project, CliError> {
        let path = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(CliError::io(format!("cannot read {}", path.display())))?;
        let manifest: toml::Table = toml::from_str(&text)
            .map_err(|e| CliError::Project(format!("{}: {e}", path.display())))?;
        let package = manifest
            .get("package")
            .and_then(|p| p.as_table())
            .ok_or_else(|| {
                CliError::Project(format!(
                    "{} has no [package]: not an application",
                    path.display()
                ))
            })?;
        let name = package
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| CliError::Project(format!("{} has no package name", path.display())))?
            .to_owned();
        // The list that used to be here is now the `devices!` macro in
        // the source: say so rather than silently ignore it.
        let legacy = package
            .get("metadata")
            .and_then(|m| m.get("lamina"))
            .and_then(|l| l.get("devices"));
        if legacy.is_some() {
            return Err(CliError::Project(format!(
                "{}: [package.metadata.lamina] devices is no longer read: declare the devices once in the source, \
                 e.g. lamina::devices! {{ pub struct Devices {{ console: Console, service: Stack }} }}, and remove the list",
                path.display()
            )));
        }
        Ok(Project {
            name,
            dir: dir.to_path_buf(),
        })
    }
}

fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lamina_root().join("examples"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}
