//! `lamina oci`: an application as an OCI image that urunc runs as a
//! unikernel (and that skopeo, umoci, containerd and `docker load` import).
//!
//! urunc (the container runtime for unikernels) tells a unikernel image from
//! a container image by its annotations, `com.urunc.unikernel.*`, or, since
//! Docker and most of containerd drop image annotations on the way to the
//! runtime, by the file `/urunc.json` in the image's root, which holds the
//! same keys with base64 values. For a Solo5-ABI image the type is `mirage`
//! and urunc starts it as
//!
//! ```text
//! solo5-hvt --mem=MB --net:service=TAP [--block:storage=IMG] BINARY --ipv4=ADDR/24 --ipv4-gateway=GW ARGS
//! ```
//!
//! (spt the same), ARGS being the container's process arguments (the image's
//! `Cmd`) or, when there are none, the `cmdline` annotation. Lamina's tenders
//! take that line as it is, and its runtime takes `--ipv4` and
//! `--ipv4-gateway` as its own: installed as `solo5-hvt`, `lamina-hvt` runs
//! the image.
//!
//! The image has one layer: `/unikernel/APP.TARGET`, `/urunc.json`, and a
//! blank disk image `/unikernel/storage.img` (or one given) when the
//! application declares the block device `storage`. Everything in it is
//! deterministic: fixed times and owners, entries in order, no creation
//! date, so the same unikernel always gives the same digests.

use crate::declared::{self, Device};
use crate::project::Project;
use crate::{build, CliError, Target};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The monitors urunc starts Solo5-ABI images with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Monitor {
    /// solo5-hvt (lamina-hvt): a KVM virtual machine.
    Hvt,
    /// solo5-spt (lamina-spt): a seccomp-sandboxed process.
    Spt,
}

impl Monitor {
    /// The build target of the same name.
    fn target(self) -> Target {
        match self {
            Monitor::Hvt => Target::Hvt,
            Monitor::Spt => Target::Spt,
        }
    }
}

/// Where the storage device's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageImage {
    /// A blank (all zero) image of this many bytes.
    Blank(u64),
    /// This file, copied into the image.
    File(PathBuf),
}

/// What `lamina oci` was asked for.
#[derive(Debug, Clone)]
pub struct OciRequest {
    /// The monitor urunc is to start the unikernel with.
    pub monitor: Monitor,
    /// Optimised build.
    pub release: bool,
    /// An OCI image layout directory, or with `.tar`, a tar of one.
    pub output: PathBuf,
    /// The image's name and tag, `NAME[:TAG]` [default: `lamina/APP:latest`].
    pub reference: Option<String>,
    /// The storage device's image, if the application declares one.
    pub storage: StorageImage,
    /// The application's boot arguments (the image's `Cmd`).
    pub boot_args: Vec<String>,
}

/// urunc's annotation keys (its `pkg/unikontainers/config.go`).
pub mod annotation {
    /// The unikernel framework: `mirage` for Solo5-ABI images.
    pub const TYPE: &str = "com.urunc.unikernel.unikernelType";
    /// The monitor: `hvt` or `spt` (looked up as `solo5-hvt`, `solo5-spt`).
    pub const HYPERVISOR: &str = "com.urunc.unikernel.hypervisor";
    /// The unikernel's path in the image's root.
    pub const BINARY: &str = "com.urunc.unikernel.binary";
    /// The guest arguments when the container has no process arguments.
    pub const CMDLINE: &str = "com.urunc.unikernel.cmdline";
    /// A disk image in the image's root, attached as `--block:storage=`.
    pub const BLOCK: &str = "com.urunc.unikernel.block";
}

/// The unikernel type urunc gives Solo5-ABI images (MirageOS's, which
/// share the ABI, the device names and the `--ipv4` arguments).
pub const SOLO5_TYPE: &str = "mirage";
/// The fallback file urunc reads, in the image's root.
pub const URUNC_JSON: &str = "urunc.json";
/// The network device urunc attaches (`--net:service=TAP`).
pub const NET_DEVICE: &str = "service";
/// The block device urunc attaches (`--block:storage=IMG`).
pub const BLOCK_DEVICE: &str = "storage";
/// Where the unikernel and its disk go in the image.
const UNIKERNEL_DIR: &str = "unikernel";

/// The longest `--ipv4=... --ipv4-gateway=... ` urunc puts before the
/// image's arguments, which must leave room for them in the guest's
/// command line.
const URUNC_NETWORK_ARGS_MAX: usize =
    "--ipv4=255.255.255.255/24 --ipv4-gateway=255.255.255.255 ".len();

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `lamina oci`: builds `project` and writes its image.
pub fn oci(project: &Project, request: &OciRequest) -> Result<(), CliError> {
    let reference = ImageRef::parse(
        request
            .reference
            .as_deref()
            .unwrap_or(&format!("lamina/{}", project.name)),
    )?;
    let cmd = command(&project.name, &request.boot_args)?;
    if let StorageImage::File(file) = &request.storage {
        check_storage_file(file)?;
    }
    // Refuse a bad output before the (long) build, not after it.
    let output = Output::prepare(&request.output)?;
    let target = request.monitor.target();
    let built = build::build(project, target, crate::guest::Profile::new(request.release))?;
    let devices = declared::read(&built.artifact)?;
    let with_storage = check_devices(&project.name, &devices)?;
    if let (false, StorageImage::File(file)) = (with_storage, &request.storage) {
        eprintln!(
            "lamina: warning: {} declares no block device '{BLOCK_DEVICE}': {} is left out of the image",
            project.name,
            file.display()
        );
    }

    let binary = format!("/{UNIKERNEL_DIR}/{}.{}", project.name, target.name());
    let block = with_storage.then(|| format!("/{UNIKERNEL_DIR}/{BLOCK_DEVICE}.img"));
    let annotations = urunc_annotations(target, &binary, &cmd.join(" "), block.as_deref());
    let mut files = vec![
        LayerFile::directory(UNIKERNEL_DIR),
        LayerFile::from_path(&binary[1..], 0o755, &built.artifact),
    ];
    if let Some(block) = &block {
        files.push(match &request.storage {
            StorageImage::Blank(size) => LayerFile::zeros(&block[1..], 0o644, *size),
            StorageImage::File(file) => LayerFile::from_path(&block[1..], 0o644, file),
        });
    }
    files.push(LayerFile::bytes(
        URUNC_JSON,
        0o644,
        urunc_json(&annotations),
    ));

    let staging = output.staging();
    let blobs = staging.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(CliError::io(format!("cannot create {}", blobs.display())))?;
    let layer = write_layer(&blobs, &files)?;
    let config = write_blob(
        &blobs,
        MEDIA_CONFIG,
        &image_config(&cmd, &annotations, &layer.diff_id),
    )?;
    let manifest = write_blob(
        &blobs,
        MEDIA_MANIFEST,
        &manifest(&config, &layer.blob, &annotations),
    )?;
    write_file(
        &staging.join("oci-layout"),
        &json_bytes(&json!({ "imageLayoutVersion": "1.0.0" })),
    )?;
    write_file(
        &staging.join("index.json"),
        &json_bytes(&index(&manifest, &reference)),
    )?;
    output.finish(&docker_manifest(&config, &layer.blob, &reference))?;
    eprintln!(
        "lamina: wrote the OCI image {} of {} ({} for urunc, {} KiB layer) to {}",
        reference.full(),
        project.name,
        request.monitor.target().name(),
        layer.blob.size / 1024,
        request.output.display()
    );
    eprintln!(
        "lamina: urunc starts it as: solo5-{} --mem=MB --net:service=TAP{} {binary} --ipv4=ADDR/24 --ipv4-gateway=GW {}",
        target.name(),
        block
            .as_deref()
            .map(|b| format!(" --block:storage={b}"))
            .unwrap_or_default(),
        cmd.join(" ")
    );
    Ok(())
}

/// The image's `Cmd`: the boot arguments, or `--name=APP` when there are
/// none. A command is needed: Docker and containerd refuse to create a
/// container that has none, and urunc takes the container's arguments
/// before the `cmdline` annotation. Lamina's runtime takes `--name` on every
/// target (deployers pass it).
pub fn command(app: &str, boot_args: &[String]) -> Result<Vec<String>, CliError> {
    if let Some(arg) = boot_args
        .iter()
        .find(|a| a.is_empty() || a.contains(char::is_whitespace))
    {
        return Err(CliError::Project(format!(
            "boot argument {arg:?}: urunc joins the arguments with spaces and splits them again, \
             so none can be empty or hold whitespace"
        )));
    }
    let cmd = if boot_args.is_empty() {
        vec![format!("--name={app}")]
    } else {
        boot_args.to_vec()
    };
    let len = cmd.join(" ").len() + URUNC_NETWORK_ARGS_MAX;
    let max = lamina_abi::CMDLINE_SIZE - 1;
    if len > max {
        return Err(CliError::Project(format!(
            "the boot arguments are too long: with urunc's --ipv4 and --ipv4-gateway the guest's command line \
             would be {len} bytes, and it holds at most {max}"
        )));
    }
    Ok(cmd)
}

/// Whether the image needs the `storage` disk; an error when the
/// application needs a device urunc cannot attach. urunc attaches one
/// network device, `service`, and one block device, `storage`.
fn check_devices(app: &str, devices: &[Device]) -> Result<bool, CliError> {
    let mut with_storage = false;
    let mut with_network = false;
    for device in devices {
        let Some(kind) = device.kind.manifest_kind() else {
            continue;
        };
        let urunc_name = if kind == "net" {
            NET_DEVICE
        } else {
            BLOCK_DEVICE
        };
        if device.name == urunc_name {
            with_storage |= kind == "block";
            with_network |= kind == "net";
        } else if !device.optional {
            return Err(CliError::Project(format!(
                "{app} declares the {kind} device '{}', which urunc cannot attach: it attaches only \
                 the network device '{NET_DEVICE}' and the block device '{BLOCK_DEVICE}'",
                device.name
            )));
        }
    }
    if !with_network {
        eprintln!(
            "lamina: warning: {app} declares no network device '{NET_DEVICE}': in a pod with a network, urunc \
             passes --net:service=TAP, which the tender refuses for an image without that device"
        );
    }
    Ok(with_storage)
}

/// A storage image given by the user: a readable regular file whose size
/// is a whole number of 512-byte sectors.
fn check_storage_file(file: &Path) -> Result<(), CliError> {
    let meta = std::fs::metadata(file).map_err(CliError::io(format!(
        "cannot read the storage image {}",
        file.display()
    )))?;
    if !meta.is_file() || meta.len() == 0 || meta.len() % 512 != 0 {
        return Err(CliError::Project(format!(
            "{}: a storage image is a regular file of a non-zero multiple of 512 bytes",
            file.display()
        )));
    }
    Ok(())
}

/// urunc's annotations for a Lamina image, in plain text (as in the image's
/// manifest and labels).
pub fn urunc_annotations(
    target: Target,
    binary: &str,
    cmdline: &str,
    block: Option<&str>,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (annotation::TYPE.to_owned(), SOLO5_TYPE.to_owned()),
        (annotation::HYPERVISOR.to_owned(), target.name().to_owned()),
        (annotation::BINARY.to_owned(), binary.to_owned()),
        (annotation::CMDLINE.to_owned(), cmdline.to_owned()),
    ]);
    if let Some(block) = block {
        annotations.insert(annotation::BLOCK.to_owned(), block.to_owned());
    }
    annotations
}

/// `/urunc.json`: the annotations with base64 values, which urunc decodes
/// (each one, as standard base64 with padding).
pub fn urunc_json(annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let encoded: BTreeMap<&str, String> = annotations
        .iter()
        .map(|(key, value)| {
            (
                key.as_str(),
                base64::engine::general_purpose::STANDARD.encode(value),
            )
        })
        .collect();
    json_bytes(&json!(encoded))
}

/// An image's name and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `lamina/website`.
    pub name: String,
    /// `latest`.
    pub tag: String,
}

impl ImageRef {
    /// Parses `NAME[:TAG]`, as Docker names images: lower-case path
    /// components of letters, digits and `.`, `_`, `-`, separated by `/`
    /// (a first component with a `.` or `:PORT` names a registry); a tag of
    /// at most 128 letters, digits, `_`, `.`, `-`, not starting with `.` or `-`.
    pub fn parse(text: &str) -> Result<ImageRef, CliError> {
        let bad = |why: &str| CliError::Project(format!("image name {text:?}: {why}"));
        // A ':' after the last '/' starts the tag; one before it is a port.
        let (name, tag) = match text.rfind(':') {
            Some(colon) if !text[colon..].contains('/') => (&text[..colon], &text[colon + 1..]),
            _ => (text, "latest"),
        };
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !tag_ok {
            return Err(bad(
                "a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            ));
        }
        let mut components = name.split('/').peekable();
        let mut first = true;
        while let Some(component) = components.next() {
            // A registry host may carry a port (`localhost:5000/app`).
            let component = match component.split_once(':') {
                Some((host, port))
                    if first
                        && components.peek().is_some()
                        && !port.is_empty()
                        && port.chars().all(|c| c.is_ascii_digit()) =>
                {
                    host
                }
                _ => component,
            };
            first = false;
            let ok = !component.is_empty()
                && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && component
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
            if !ok {
                return Err(bad(
                    "a name is lower-case letters, digits, '.', '_' and '-', in parts separated by '/'",
                ));
            }
        }
        Ok(ImageRef {
            name: name.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// `NAME:TAG`.
    pub fn full(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// A blob's descriptor: what the manifest and index say of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: &'static str,
    /// `sha256:HEX`.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }

    /// The blob's path in an image layout, `blobs/sha256/HEX`.
    fn path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }
}

/// The image configuration: the platform, the command, the annotations as
/// labels (where Docker's `inspect` and `skopeo inspect` show them) and the
/// layer's uncompressed digest. No creation date, so the same unikernel
/// gives the same configuration.
pub fn image_config(
    cmd: &[String],
    annotations: &BTreeMap<String, String>,
    diff_id: &str,
) -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": cmd, "Labels": annotations },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": "lamina oci", "comment": "the unikernel for urunc" }],
    })
}

/// The image manifest, carrying urunc's annotations too.
pub fn manifest(
    config: &Descriptor,
    layer: &Descriptor,
    annotations: &BTreeMap<String, String>,
) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json()],
        "annotations": annotations,
    })
}

/// The layout's `index.json`: one manifest, named by its tag (as skopeo
/// and umoci look it up) and by its full name (as `ctr images import` does).
pub fn index(manifest: &Descriptor, reference: &ImageRef) -> Value {
    let mut entry = manifest.to_json();
    entry["annotations"] = json!({
        "org.opencontainers.image.ref.name": reference.tag,
        "io.containerd.image.name": reference.full(),
    });
    json!({ "schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry] })
}

/// `manifest.json`, the table `docker load` reads (in the tar only).
pub fn docker_manifest(config: &Descriptor, layer: &Descriptor, reference: &ImageRef) -> Value {
    json!([{
        "Config": config.path(),
        "RepoTags": [reference.full()],
        "Layers": [layer.path()],
    }])
}

/// Compact JSON: the bytes that are hashed are the bytes written.
fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON values serialize")
}

/// `sha256:HEX` of what a hasher saw.
fn digest_of(hasher: Sha256) -> String {
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Writes `bytes` into `blobs` under their digest.
fn write_blob(
    blobs: &Path,
    media_type: &'static str,
    value: &Value,
) -> Result<Descriptor, CliError> {
    let bytes = json_bytes(value);
    let mut hasher = Sha256::new();
    hasher.update(&bytes);
    let descriptor = Descriptor {
        media_type,
        digest: digest_of(hasher),
        size: bytes.len() as u64,
    };
    write_file(&blobs.join(&descriptor.digest["sha256:".len()..]), &bytes)?;
    Ok(descriptor)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(CliError::io(format!("cannot write {}", path.display())))
}

/// One file or directory of the layer.
pub struct LayerFile {
    /// Its path, relative (`unikernel/website.hvt`).
    path: String,
    /// Its permission bits.
    mode: u32,
    /// What it holds.
    content: Content,
}

enum Content {
    Directory,
    Bytes(Vec<u8>),
    Zeros(u64),
    File(PathBuf),
}

impl LayerFile {
    /// A directory, 0755.
    pub fn directory(path: &str) -> LayerFile {
        LayerFile {
            path: format!("{path}/"),
            mode: 0o755,
            content: Content::Directory,
        }
    }

    /// A file holding `bytes`.
    pub fn bytes(path: &str, mode: u32, bytes: Vec<u8>) -> LayerFile {
        LayerFile {
            path: path.to_owned(),
            mode,
            content: Content::Bytes(bytes),
        }
    }

    /// A file of `size` zero bytes (a blank disk image).
    pub fn zeros(path: &str, mode: u32, size: u64) -> LayerFile {
        LayerFile {
            path: path.to_owned(),
            mode,
            content: Content::Zeros(size),
        }
    }

    /// A copy of the file at `source`, read when the layer is written.
    pub fn from_path(path: &str, mode: u32, source: &Path) -> LayerFile {
        LayerFile {
            path: path.to_owned(),
            mode,
            content: Content::File(source.to_path_buf()),
        }
    }
}

/// The layer's two digests: of the gzipped blob, and of the tar inside it
/// (the `diff_id` of the configuration).
struct Layer {
    blob: Descriptor,
    diff_id: String,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the layer (a gzipped tar of `files`) into `blobs`, streaming: a
/// disk image of gigabytes is never held in memory.
fn write_layer(blobs: &Path, files: &[LayerFile]) -> Result<Layer, CliError> {
    let partial = blobs.join(".layer.partial");
    let file = File::create(&partial)
        .map_err(CliError::io(format!("cannot create {}", partial.display())))?;
    let compressed = Hashing::new(BufWriter::new(file));
    let (compressed, diff_id) =
        layer_tar(files, compressed).map_err(CliError::io("cannot write the image's layer"))?;
    let blob = Descriptor {
        media_type: MEDIA_LAYER,
        digest: digest_of(compressed.hasher),
        size: compressed.count,
    };
    compressed
        .inner
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(CliError::io(format!("cannot write {}", partial.display())))?;
    let path = blobs.join(&blob.digest["sha256:".len()..]);
    std::fs::rename(&partial, &path)
        .map_err(CliError::io(format!("cannot write {}", path.display())))?;
    Ok(Layer { blob, diff_id })
}

/// Writes the tar of `files`, gzipped, to `out`; returns `out` and the
/// tar's digest. Deterministic: owner root, time 0, the order given, and a
/// gzip header without a time or name.
fn layer_tar<W: Write>(files: &[LayerFile], out: W) -> std::io::Result<(W, String)> {
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    for file in files {
        let mut header = tar::Header::new_ustar();
        header.set_mode(file.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        match &file.content {
            Content::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &file.path, std::io::empty())?;
            }
            Content::Bytes(bytes) => {
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &file.path, bytes.as_slice())?;
            }
            Content::Zeros(size) => {
                header.set_size(*size);
                tar.append_data(&mut header, &file.path, std::io::repeat(0).take(*size))?;
            }
            Content::File(source) => {
                let mut reader = File::open(source)?;
                let size = reader.metadata()?.len();
                header.set_size(size);
                // A file that changed size while read would corrupt the tar:
                // take exactly what the header says, and fail if short.
                let mut exact = (&mut reader).take(size);
                tar.append_data(&mut header, &file.path, &mut exact)?;
                if exact.limit() != 0 {
                    return Err(std::io::Error::other(format!(
                        "{} shrank while it was read",
                        source.display()
                    )));
                }
            }
        }
    }
    let hashing = tar.into_inner()?;
    let diff_id = digest_of(hashing.hasher);
    let out = hashing.inner.finish()?;
    Ok((out, diff_id))
}

/// The output, checked and made ready before the build: a directory
/// (written in place) or a tar (staged in a directory beside it, then
/// archived and renamed into place).
enum Output {
    Directory(PathBuf),
    Tar { tar: PathBuf, staging: PathBuf },
}

impl Output {
    fn prepare(out: &Path) -> Result<Output, CliError> {
        let is_tar = out.extension().is_some_and(|e| e == "tar");
        if is_tar {
            if out.is_dir() {
                return Err(CliError::Project(format!(
                    "{} is a directory: give a file name ending in .tar, or a directory without .tar",
                    out.display()
                )));
            }
            let parent = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                return Err(CliError::Project(format!(
                    "cannot write {}: {} is not a directory",
                    out.display(),
                    parent.display()
                )));
            }
            let name = out.file_name().unwrap_or_default().to_string_lossy();
            let staging = parent.join(format!(".{name}.{}.partial", std::process::id()));
            std::fs::create_dir(&staging).map_err(CliError::io(format!(
                "cannot write in {}",
                parent.display()
            )))?;
            return Ok(Output::Tar {
                tar: out.to_path_buf(),
                staging,
            });
        }
        std::fs::create_dir_all(out).map_err(CliError::io(format!(
            "cannot create the directory {}",
            out.display()
        )))?;
        let entries: Vec<_> = std::fs::read_dir(out)
            .map_err(CliError::io(format!("cannot read {}", out.display())))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        let layout = ["oci-layout", "index.json", "blobs"];
        if !entries.is_empty() {
            let ours = out.join("oci-layout").is_file()
                && entries
                    .iter()
                    .all(|e| layout.iter().any(|l| e.as_os_str() == *l));
            if !ours {
                return Err(CliError::Project(format!(
                    "{} is neither empty nor an OCI image layout: give a new directory",
                    out.display()
                )));
            }
            // An image layout written before (by us or another tool): its
            // image is replaced.
            for entry in layout {
                let path = out.join(entry);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match removed {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(CliError::io(format!("cannot replace {}", path.display()))(
                            e,
                        ))
                    }
                    _ => {}
                }
            }
        }
        Ok(Output::Directory(out.to_path_buf()))
    }

    /// Where the layout is written.
    fn staging(&self) -> &Path {
        match self {
            Output::Directory(dir) => dir,
            Output::Tar { staging, .. } => staging,
        }
    }

    /// Archives a staged layout, with Docker's `manifest.json` beside it
    /// (the staging directory goes when `self` is dropped).
    fn finish(self, docker_manifest: &Value) -> Result<(), CliError> {
        match &self {
            Output::Tar { tar, staging } => archive(staging, tar, docker_manifest),
            Output::Directory(_) => Ok(()),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // A tar's staging directory goes, finished or not (an error on the
        // way leaves nothing behind).
        if let Output::Tar { staging, .. } = self {
            let _ = std::fs::remove_dir_all(staging);
        }
    }
}

/// Writes the tar of the layout in `staging` to `out`: `oci-layout`,
/// `index.json`, `manifest.json`, then the blobs in name order.
fn archive(staging: &Path, out: &Path, docker_manifest: &Value) -> Result<(), CliError> {
    let partial = staging.with_extension("tar");
    let io = |what: &str| CliError::io(format!("cannot write {what}"));
    let file = File::create(&partial).map_err(io(&partial.display().to_string()))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let add = |tar: &mut tar::Builder<BufWriter<File>>,
               path: &str,
               source: Option<&Path>,
               bytes: &[u8]|
     -> std::io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        if path.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            return tar.append_data(&mut header, path, std::io::empty());
        }
        header.set_mode(0o644);
        match source {
            Some(source) => {
                let mut file = File::open(source)?;
                header.set_size(file.metadata()?.len());
                tar.append_data(&mut header, path, &mut file)
            }
            None => {
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, path, bytes)
            }
        }
    };
    let written = (|| -> std::io::Result<()> {
        for name in ["oci-layout", "index.json"] {
            add(&mut tar, name, Some(&staging.join(name)), &[])?;
        }
        add(
            &mut tar,
            "manifest.json",
            None,
            &json_bytes(docker_manifest),
        )?;
        add(&mut tar, "blobs/", None, &[])?;
        add(&mut tar, "blobs/sha256/", None, &[])?;
        let blobs = staging.join("blobs").join("sha256");
        let mut names: Vec<_> = std::fs::read_dir(&blobs)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            add(
                &mut tar,
                &format!("blobs/sha256/{name}"),
                Some(&blobs.join(&name)),
                &[],
            )?;
        }
        tar.into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
    })();
    let result = written
        .and_then(|()| std::fs::rename(&partial, out))
        .map_err(io(&out.display().to_string()));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_annotations(block: Option<&str>) -> BTreeMap<String, String> {
        urunc_annotations(
            Target::Hvt,
            "/unikernel/website.hvt",
            "--name=website",
            block,
        )
    }

    #[test]
    fn annotations_are_urunc_s_keys_for_a_solo5_image() {
        let a = request_annotations(None);
        assert_eq!(a["com.urunc.unikernel.unikernelType"], "mirage");
        assert_eq!(a["com.urunc.unikernel.hypervisor"], "hvt");
        assert_eq!(a["com.urunc.unikernel.binary"], "/unikernel/website.hvt");
        assert_eq!(a["com.urunc.unikernel.cmdline"], "--name=website");
        assert!(!a.contains_key("com.urunc.unikernel.block"));
        let a = request_annotations(Some("/unikernel/storage.img"));
        assert_eq!(a["com.urunc.unikernel.block"], "/unikernel/storage.img");
    }

    #[test]
    fn urunc_json_holds_base64_values() {
        let json: BTreeMap<String, String> =
            serde_json::from_slice(&urunc_json(&request_annotations(None))).unwrap();
        assert_eq!(json["com.urunc.unikernel.unikernelType"], "bWlyYWdl");
        assert_eq!(json["com.urunc.unikernel.hypervisor"], "aHZ0");
        assert_eq!(json.len(), 4);
    }

    #[test]
    fn the_command_is_never_empty_and_survives_urunc_s_split() {
        assert_eq!(command("kv", &[]).unwrap(), ["--name=kv"]);
        let args = vec!["--port=8080".to_owned()];
        assert_eq!(command("kv", &args).unwrap(), args);
        for bad in ["two words", "", "tab\there"] {
            let error = command("kv", &[bad.to_owned()]).unwrap_err().to_string();
            assert!(error.contains("whitespace"), "{error}");
        }
        let long = vec![format!("--x={}", "y".repeat(8192))];
        assert!(command("kv", &long)
            .unwrap_err()
            .to_string()
            .contains("too long"));
    }

    #[test]
    fn image_names_parse_as_docker_s() {
        let r = ImageRef::parse("lamina/website").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("lamina/website", "latest")
        );
        let r = ImageRef::parse("localhost:5000/web:v1.2").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("localhost:5000/web", "v1.2")
        );
        let r = ImageRef::parse("localhost:5000/web").unwrap();
        assert_eq!(r.full(), "localhost:5000/web:latest");
        for bad in [
            "", "Web", "web:", "web:-x", "/web", "web//x", "web_", "a:b:c",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} was taken");
        }
    }

    /// The entries of an uncompressed tar: path, mode, owner, time, size.
    fn entries(tar_bytes: &[u8]) -> Vec<(String, u32, u64, u64, u64)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_layer_is_deterministic_and_its_digests_are_of_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("k");
        std::fs::write(&kernel, b"\x7fELF kernel").unwrap();
        let files = || {
            vec![
                LayerFile::directory("unikernel"),
                LayerFile::from_path("unikernel/k.hvt", 0o755, &kernel),
                LayerFile::zeros("unikernel/storage.img", 0o644, 4096),
                LayerFile::bytes("urunc.json", 0o644, b"{}".to_vec()),
            ]
        };
        let (first, diff_id) = layer_tar(&files(), Vec::new()).unwrap();
        let (second, _) = layer_tar(&files(), Vec::new()).unwrap();
        assert_eq!(first, second, "two layers of the same files differ");

        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(first.as_slice())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let mut hasher = Sha256::new();
        hasher.update(&tar_bytes);
        assert_eq!(diff_id, digest_of(hasher));
        assert_eq!(
            entries(&tar_bytes),
            [
                ("unikernel/".to_owned(), 0o755, 0, 0, 0),
                ("unikernel/k.hvt".to_owned(), 0o755, 0, 0, 11),
                ("unikernel/storage.img".to_owned(), 0o644, 0, 0, 4096),
                ("urunc.json".to_owned(), 0o644, 0, 0, 2),
            ]
        );

        let blobs = dir.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        let layer = write_layer(&blobs, &files()).unwrap();
        let written = std::fs::read(blobs.join(&layer.blob.digest[7..])).unwrap();
        assert_eq!(written, first);
        assert_eq!(layer.blob.size, first.len() as u64);
        assert!(!blobs.join(".layer.partial").exists());
    }

    #[test]
    fn an_image_layout_written_before_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("layout");
        std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
        std::fs::write(out.join("blobs/sha256/old"), b"old blob").unwrap();
        std::fs::write(out.join("oci-layout"), b"{}").unwrap();
        std::fs::write(out.join("index.json"), b"{}").unwrap();
        let output = Output::prepare(&out).unwrap();
        assert_eq!(output.staging(), out);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "emptied");
    }

    #[test]
    fn a_bad_output_is_refused_before_anything_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let error = |out: &Path| Output::prepare(out).err().unwrap().to_string();
        assert!(error(&file.join("out")).contains("cannot create the directory"));
        assert!(error(&file.join("out.tar")).contains("is not a directory"));
        let busy = dir.path().join("busy");
        std::fs::create_dir(&busy).unwrap();
        std::fs::write(busy.join("notes.txt"), b"mine").unwrap();
        assert!(error(&busy).contains("neither empty nor an OCI image layout"));
        assert!(busy.join("notes.txt").exists());
        let tar_dir = dir.path().join("d.tar");
        std::fs::create_dir(&tar_dir).unwrap();
        assert!(error(&tar_dir).contains("is a directory"));
    }
}
