//! Device arguments of the unix target: `--block:NAME=FILE`, `--kv:NAME=DIR`,
//! `--net:NAME=TAP` and `--bind=ADDR`.

use lamina_core::args::{ArgError, ArgSet, ArgSpec};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// What was attached on the command line.
#[derive(Debug, Clone)]
pub struct DeviceArgs {
    /// Block devices by name.
    pub blocks: BTreeMap<String, PathBuf>,
    /// Key-value directories by name.
    pub kvs: BTreeMap<String, PathBuf>,
    /// Tap devices by name.
    pub taps: BTreeMap<String, String>,
    /// The address unspecified listen addresses bind to.
    pub bind: IpAddr,
}

impl Default for DeviceArgs {
    fn default() -> Self {
        DeviceArgs {
            blocks: BTreeMap::new(),
            kvs: BTreeMap::new(),
            taps: BTreeMap::new(),
            bind: IpAddr::from([127, 0, 0, 1]),
        }
    }
}

fn valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 67
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ArgSet for DeviceArgs {
    fn title(&self) -> &str {
        "Devices (unix target)"
    }

    fn specs(&self) -> Vec<ArgSpec> {
        vec![
            ArgSpec {
                name: "block:NAME",
                value: "FILE",
                help: "attach FILE as block device NAME",
                default: "",
            },
            ArgSpec {
                name: "kv:NAME",
                value: "DIR",
                help: "attach directory DIR as key-value store NAME",
                default: "",
            },
            ArgSpec {
                name: "net:NAME",
                value: "TAP",
                help: "attach tap device TAP as network interface NAME",
                default: "",
            },
            ArgSpec {
                name: "bind",
                value: "ADDR",
                help: "host address that listening on 0.0.0.0 binds to",
                default: "127.0.0.1",
            },
        ]
    }

    fn accept(&mut self, name: &str, value: Option<&str>) -> Result<bool, ArgError> {
        if name == "bind" {
            let value = value.ok_or_else(|| ArgError::MissingValue(name.to_owned()))?;
            self.bind = value.parse().map_err(|_| ArgError::Invalid {
                name: name.to_owned(),
                value: value.to_owned(),
                reason: "expected an IP address".to_owned(),
            })?;
            return Ok(true);
        }
        let Some((kind, device)) = name.split_once(':') else {
            return Ok(false);
        };
        if !matches!(kind, "block" | "kv" | "net") {
            return Ok(false);
        }
        let invalid = |reason: &str| ArgError::Invalid {
            name: name.to_owned(),
            value: value.unwrap_or("").to_owned(),
            reason: reason.to_owned(),
        };
        if !valid_device_name(device) {
            return Err(invalid("device names are 1-67 letters, digits, '-' or '_'"));
        }
        let value = match value {
            Some(v) if !v.is_empty() => v,
            _ => return Err(ArgError::MissingValue(name.to_owned())),
        };
        let device = device.to_owned();
        match kind {
            "block" => self.blocks.insert(device, value.into()),
            "kv" => self.kvs.insert(device, value.into()),
            _ => self
                .taps
                .insert(device, value.to_owned())
                .map(PathBuf::from),
        };
        Ok(true)
    }

    fn is_flag(&self, _: &str) -> bool {
        false
    }
}
