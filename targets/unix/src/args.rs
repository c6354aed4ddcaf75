//! Device arguments of the unix target: `--block:NAME=FILE`, `--kv:NAME=DIR`,
//! `--net:NAME=TAP`, `--bind=ADDR` and `--dns=ADDR[,ADDR...]`.

use lamina_core::args::{ArgError, ArgSet, ArgSpec, ArgValue};
use lamina_core::declare::{Attachment, Declared};
use lamina_core::device::DnsServers;
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
    /// The DNS servers the stack reports (`--dns`); without it, those of
    /// `/etc/resolv.conf`.
    pub dns: Option<DnsServers>,
}

impl Default for DeviceArgs {
    fn default() -> Self {
        DeviceArgs {
            blocks: BTreeMap::new(),
            kvs: BTreeMap::new(),
            taps: BTreeMap::new(),
            bind: IpAddr::from([127, 0, 0, 1]),
            dns: None,
        }
    }
}

impl DeviceArgs {
    /// Refuses a device attached under a name the application does not
    /// declare, as the Solo5 tenders refuse one the manifest does not list:
    /// a misspelt `--block:storge=FILE` is a clear error, not a device that
    /// is silently never used.
    pub fn check_declared(&self, declared: &[Declared]) -> Result<(), String> {
        let attached: [(&str, Attachment, Vec<&String>); 3] = [
            ("block", Attachment::Block, self.blocks.keys().collect()),
            ("kv", Attachment::Kv, self.kvs.keys().collect()),
            ("net", Attachment::Net, self.taps.keys().collect()),
        ];
        for (kind, attachment, names) in attached {
            let wanted: Vec<&str> = declared
                .iter()
                .filter(|d| d.family.attachment == attachment)
                .map(|d| d.name)
                .collect();
            if let Some(name) = names.into_iter().find(|n| !wanted.contains(&n.as_str())) {
                return Err(format!(
                    "--{kind}:{name}: the application declares no {kind} device '{name}' (it declares: {})",
                    if wanted.is_empty() {
                        String::from("none")
                    } else {
                        wanted.join(", ")
                    }
                ));
            }
        }
        Ok(())
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
            ArgSpec {
                name: "dns",
                value: "ADDR[:PORT],...",
                help:
                    "DNS servers for resolvers (at most 3); without it, those of /etc/resolv.conf",
                default: "",
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
        if name == "dns" {
            let value = value.ok_or_else(|| ArgError::MissingValue(name.to_owned()))?;
            let servers = DnsServers::parse_arg(value).map_err(|reason| ArgError::Invalid {
                name: name.to_owned(),
                value: value.to_owned(),
                reason,
            })?;
            self.dns = Some(servers);
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

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_core::declare::family;

    const DECLARED: &[Declared] = &[
        Declared {
            name: "console",
            family: &family::CONSOLE,
        },
        Declared {
            name: "storage",
            family: &family::BLOCK,
        },
    ];

    #[test]
    fn devices_attached_under_undeclared_names_are_refused() {
        let mut args = DeviceArgs::default();
        assert!(args.accept("block:storage", Some("disk.img")).unwrap());
        assert_eq!(args.check_declared(DECLARED), Ok(()));
        assert!(args.accept("block:storge", Some("disk.img")).unwrap());
        assert_eq!(
            args.check_declared(DECLARED).unwrap_err(),
            "--block:storge: the application declares no block device 'storge' (it declares: storage)"
        );
        let mut args = DeviceArgs::default();
        assert!(args.accept("net:service", Some("tap0")).unwrap());
        assert_eq!(
            args.check_declared(DECLARED).unwrap_err(),
            "--net:service: the application declares no net device 'service' (it declares: none)"
        );
    }

    #[test]
    fn dns_servers_are_addresses_with_optional_ports() {
        let mut args = DeviceArgs::default();
        assert!(args.accept("dns", Some("127.0.0.1:5353,::1")).unwrap());
        assert_eq!(
            args.dns.clone().unwrap().0,
            [
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let error = args.accept("dns", Some("localhost")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("'localhost' is not an IP address"),
            "{error}"
        );
    }
}
