//! `lamina store format|ls|get|put|rm|fsck IMAGE`: the key-value store of
//! `lamina-store` on a disk image from the host, with the store's own code
//! (a project building a disk ahead of time, an operator inspecting one).

use crate::CliError;
use lamina_core::device::{KvError, KvRead, KvWrite};
use lamina_core::runtime::{Executor, Instant, Park};
use lamina_store::{Batch, FileBlock, Store, StoreError};
use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

/// What `lamina store` was asked to do.
pub enum Action<'a> {
    /// List the keys under a prefix with their sizes.
    List { prefix: &'a str },
    /// Write a value to `output` (stdout if `None`).
    Get {
        key: &'a str,
        output: Option<&'a Path>,
    },
    /// Store the contents of `input` (stdin if `None`) under `key`.
    Put {
        key: &'a str,
        input: Option<&'a Path>,
    },
    /// Remove keys, all or none.
    Remove { keys: &'a [String] },
    /// Mount, read every value back, report.
    Check,
}

/// Never waits: file I/O completes before the future returns.
struct FileIo;

impl Park for FileIo {
    fn now(&self) -> Instant {
        Instant::from_nanos(0)
    }
    fn park(&self, _: Option<Instant>) {}
}

fn block_on<F: Future>(future: F) -> F::Output {
    Executor::new(Rc::new(FileIo)).block_on(future)
}

fn store_error(image: &Path) -> impl Fn(StoreError) -> CliError + '_ {
    move |e| CliError::Store(format!("{}: {e}", image.display()))
}

fn kv_error<'a>(image: &'a Path, key: &'a str) -> impl Fn(KvError) -> CliError + 'a {
    move |e| CliError::Store(format!("{}: {key}: {e}", image.display()))
}

/// Runs `action` on the store in `image`.
pub fn run(image: &Path, action: Action<'_>) -> Result<ExitCode, CliError> {
    let writes = matches!(action, Action::Put { .. } | Action::Remove { .. });
    let device = FileBlock::open(image, !writes).map_err(CliError::Store)?;
    let store = block_on(Store::mount(device)).map_err(store_error(image))?;
    match action {
        Action::List { prefix } => {
            let entries = block_on(store.list(prefix)).map_err(kv_error(image, prefix))?;
            let mut out = std::io::stdout().lock();
            for entry in entries {
                writeln!(out, "{}\t{}", entry.size, entry.key)
                    .map_err(CliError::io("cannot write to stdout"))?;
            }
        }
        Action::Get { key, output } => {
            let value = block_on(store.get(key)).map_err(kv_error(image, key))?;
            match output {
                Some(path) => std::fs::write(path, &value)
                    .map_err(CliError::io(format!("cannot write {}", path.display())))?,
                None => std::io::stdout()
                    .lock()
                    .write_all(&value)
                    .map_err(CliError::io("cannot write to stdout"))?,
            }
        }
        Action::Put { key, input } => {
            // No value is larger than the image: more is not read (from
            // /dev/zero or an endless pipe it was, until memory ran out).
            let most = std::fs::metadata(image).map_or(0, |m| m.len());
            let (mut value, from) = (
                Vec::new(),
                match input {
                    Some(path) => path.display().to_string(),
                    None => String::from("stdin"),
                },
            );
            let read = match input {
                Some(path) => std::fs::File::open(path)
                    .and_then(|file| file.take(most + 1).read_to_end(&mut value)),
                None => std::io::stdin()
                    .lock()
                    .take(most + 1)
                    .read_to_end(&mut value),
            };
            read.map_err(CliError::io(format!("cannot read {from}")))?;
            if value.len() as u64 > most {
                return Err(CliError::Store(format!(
                    "{from}: more than the {most} bytes of {}: no store on it could hold it",
                    image.display()
                )));
            }
            block_on(store.set(key, &value)).map_err(kv_error(image, key))?;
        }
        Action::Remove { keys } => {
            let mut batch = Batch::new();
            for key in keys {
                // All or none: every key must be there before any goes.
                block_on(store.size(key)).map_err(kv_error(image, key))?;
                batch.remove(key).map_err(kv_error(image, key))?;
            }
            block_on(store.commit(batch)).map_err(kv_error(image, "remove"))?;
        }
        Action::Check => return check(image, &store),
    }
    Ok(ExitCode::SUCCESS)
}

/// `lamina store format`: with a size, (re)creates the image first.
pub fn format(image: &Path, size: Option<u64>) -> Result<ExitCode, CliError> {
    let device = match size {
        Some(bytes) => FileBlock::create(image, bytes),
        None => FileBlock::open(image, false),
    }
    .map_err(CliError::Store)?;
    // A fresh volume id, so that nothing of a store the image held before
    // can pass for part of this one.
    let volume = getrandom::u64().map_err(|e| CliError::Store(format!("no randomness: {e}")))?;
    let store = block_on(Store::format_with_volume(device, volume)).map_err(store_error(image))?;
    let stats = block_on(store.stats());
    eprintln!(
        "lamina: formatted {}: {} blocks of {} bytes",
        image.display(),
        stats.blocks,
        stats.block_size
    );
    Ok(ExitCode::SUCCESS)
}

/// `lamina store fsck`: the mount has checked the structure; this reads
/// every value back against its checksums.
fn check(image: &Path, store: &Store<FileBlock>) -> Result<ExitCode, CliError> {
    let stats = block_on(store.stats());
    let damaged = block_on(store.verify());
    println!(
        "{}: generation {}, {} keys, {} bytes of values; {} of {} blocks of {} bytes free; \
         log {} blocks; index {} pages in {} levels",
        image.display(),
        stats.generation,
        stats.keys,
        stats.value_bytes,
        stats.free_blocks,
        stats.blocks,
        stats.block_size,
        stats.log_blocks,
        stats.index_pages,
        stats.index_levels
    );
    for (key, error) in &damaged {
        println!("damaged: {key}: {error}");
    }
    if damaged.is_empty() {
        println!("clean");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Store(format!(
            "{}: {} damaged values",
            image.display(),
            damaged.len()
        )))
    }
}

/// Parses a size: bytes, or a number with K, M, G or T (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.trim().chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 30),
        Some('T' | 't') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (bytes, or a number with K, M, G or T)"))?;
    number
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes > 0 && bytes % 512 == 0)
        .ok_or_else(|| format!("{text:?}: a store image is a non-zero multiple of 512 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        for bad in ["", "M", "12x", "100", "0", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
