//! An application on disk: its directory, name and declared devices.

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

/// A device the application declares: `console`, `clock`, `random`,
/// `stack:NAME`, `netif:NAME`, `block:NAME` or `kv:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device family.
    pub kind: DeviceKind,
    /// Its name in the manifest; empty for the unique devices.
    pub name: String,
}

/// Device families, as in the traits of `lamina-core`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Console,
    Clock,
    Random,
    Stack,
    Netif,
    Block,
    Kv,
}

impl DeviceKind {
    /// The trait that the application is generic over.
    pub fn trait_name(self) -> &'static str {
        match self {
            DeviceKind::Console => "Console",
            DeviceKind::Clock => "Clock",
            DeviceKind::Random => "Random",
            DeviceKind::Stack => "Stack",
            DeviceKind::Netif => "Netif",
            DeviceKind::Block => "Block",
            DeviceKind::Kv => "KvWrite",
        }
    }
}

impl Device {
    /// Parses a declaration from `[package.metadata.lamina] devices`.
    pub fn parse(spec: &str) -> Result<Device, String> {
        let (kind, name) = match spec.split_once(':') {
            Some((k, n)) => (k, n),
            None => (spec, ""),
        };
        let kind = match kind {
            "console" => DeviceKind::Console,
            "clock" => DeviceKind::Clock,
            "random" => DeviceKind::Random,
            "stack" => DeviceKind::Stack,
            "netif" | "net" => DeviceKind::Netif,
            "block" => DeviceKind::Block,
            "kv" => DeviceKind::Kv,
            _ => {
                return Err(format!(
                    "unknown device '{spec}': expected console, clock, random, stack:NAME, netif:NAME, block:NAME or kv:NAME"
                ))
            }
        };
        let named = matches!(
            kind,
            DeviceKind::Stack | DeviceKind::Netif | DeviceKind::Block | DeviceKind::Kv
        );
        let valid_name = !name.is_empty()
            && name.len() <= 67
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if named && !valid_name {
            return Err(format!("device '{spec}' needs a name of 1-67 letters, digits, '-' or '_' (like stack:service)"));
        }
        if !named && !name.is_empty() {
            return Err(format!("device '{spec}' takes no name"));
        }
        Ok(Device {
            kind,
            name: name.to_owned(),
        })
    }
}

/// An application found on disk.
#[derive(Debug, Clone)]
pub struct Project {
    /// Package name (also the binary's).
    pub name: String,
    /// Directory holding its Cargo.toml.
    pub dir: PathBuf,
    /// Devices it declares, in order.
    pub devices: Vec<Device>,
}

impl Project {
    /// Finds the application `app`: a directory with a Cargo.toml, or the
    /// name of one of Lamina's examples.
    pub fn find(app: &str) -> Result<Project, CliError> {
        let given = PathBuf::from(app);
        let dir = if given.join("Cargo.toml").is_file() {
            given
        } else {
            let example = lamina_root().join("examples").join(app);
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
        let declared = package
            .get("metadata")
            .and_then(|m| m.get("lamina"))
            .and_then(|l| l.get("devices"));
        let devices = match declared {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| "device declarations are strings".to_owned())
                        .and_then(Device::parse)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::Project(format!("{}: [package.metadata.lamina] devices: {e}", path.display())))?,
            Some(_) => {
                return Err(CliError::Project(format!(
                    "{}: [package.metadata.lamina] devices must be a list like [\"console\", \"stack:service\"]",
                    path.display()
                )))
            }
        };
        Ok(Project {
            name,
            dir: dir.to_path_buf(),
            devices,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_declarations() {
        assert_eq!(
            Device::parse("stack:service").unwrap(),
            Device {
                kind: DeviceKind::Stack,
                name: "service".into()
            }
        );
        assert_eq!(Device::parse("clock").unwrap().kind, DeviceKind::Clock);
        for bad in ["stack", "block:", "clock:x", "disk:a", "kv:a/b", ""] {
            assert!(Device::parse(bad).is_err(), "{bad}");
        }
    }
}
