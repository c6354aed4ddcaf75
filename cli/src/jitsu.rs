//! `lamina jitsu CONFIG`: builds every service's unikernel and the tenders
//! it needs, then runs lamina-jitsu's daemon until SIGTERM or Ctrl-C.
//! `lamina jitsu status CONFIG` prints the running daemon's status page.

use crate::project::Project;
use crate::{CliError, Target};
use lamina_jitsu::config::{Application, Config, Target as JitsuTarget};
use lamina_jitsu::{Daemon, Programs};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads the configuration: a bad one is an error naming its line.
fn read_config(path: &Path) -> Result<Config, CliError> {
    Config::read(path).map_err(|e| CliError::Project(e.to_string()))
}

/// The tender of `target`.
fn jitsu_target(target: Target) -> JitsuTarget {
    if target == Target::Spt {
        JitsuTarget::Spt
    } else {
        JitsuTarget::Hvt
    }
}

/// Builds what `config` names and runs the daemon.
pub fn run(config_path: &Path) -> Result<(), CliError> {
    let mut config = read_config(config_path)?;
    let default_target = jitsu_target(Target::resolve(None));
    let mut programs = Programs {
        hvt: None,
        spt: None,
        usernet: crate::usernet::usernet_binary()?,
        default_target,
    };
    // Each application is built once per target, however many services run it.
    let mut built_images: HashMap<(PathBuf, &'static str), (PathBuf, Vec<String>)> = HashMap::new();
    for service in &mut config.services {
        let target = service.target.unwrap_or(default_target);
        let cli_target = match target {
            JitsuTarget::Hvt => Target::Hvt,
            JitsuTarget::Spt => Target::Spt,
        };
        let slot = match target {
            JitsuTarget::Hvt => &mut programs.hvt,
            JitsuTarget::Spt => &mut programs.spt,
        };
        if slot.is_none() {
            *slot = Some(crate::build::tender(cli_target)?);
        }
        if let Application::Project(app) = &service.app {
            // A directory next to the configuration, else an example's name.
            let beside = config.base.join(app);
            let project = Project::find(if beside.join("Cargo.toml").is_file() {
                beside.to_str().unwrap_or(app)
            } else {
                app
            })?;
            let key = (project.dir.clone(), target.name());
            if !built_images.contains_key(&key) {
                eprintln!(
                    "lamina: jitsu: building {} for {} ({})",
                    project.name,
                    target.name(),
                    service.name
                );
                let built =
                    crate::build::build(&project, cli_target, crate::guest::Profile::new(true))?;
                let nets = crate::declared::read(&built.artifact)?
                    .into_iter()
                    .filter(|d| d.kind.manifest_kind() == Some("net"))
                    .map(|d| d.name)
                    .collect();
                built_images.insert(key.clone(), (built.artifact, nets));
            }
            let (artifact, nets) = &built_images[&key];
            match nets.as_slice() {
                [] => {
                    return Err(CliError::Project(format!(
                        "{}: {} declares no network device, so no client could reach it",
                        service.name, project.name
                    )))
                }
                [only] => service.net_device = only.clone(),
                _ if nets.contains(&service.net_device) => {}
                _ => {
                    return Err(CliError::Project(format!(
                        "{}: {} declares several network devices; name the one for clients with net = \"NAME\"",
                        service.name, project.name
                    )))
                }
            }
            service.image = Some(artifact.clone());
        } else if let Some(image) = &service.image {
            if !image.is_file() {
                return Err(CliError::Project(format!(
                    "{}: no image at {}",
                    service.name,
                    image.display()
                )));
            }
        }
        service.target = Some(target);
    }
    let daemon = Daemon::new(config, programs).map_err(CliError::io("lamina jitsu"))?;
    daemon.run().map_err(CliError::io("lamina jitsu"))
}

/// Prints the status page of the daemon that `config_path` configures.
pub fn status(config_path: &Path) -> Result<(), CliError> {
    let config = read_config(config_path)?;
    let page = lamina_jitsu::status::fetch(config.status).map_err(CliError::io(format!(
        "no lamina jitsu answers on {} (is it running with {}?)",
        config.status,
        config_path.display()
    )))?;
    print!("{page}");
    Ok(())
}
