//! `lamina oci` against the real OCI tools and urunc's way of starting a
//! Solo5 unikernel: the image is checked by skopeo, unpacked by umoci, and
//! the unikernel inside is started as urunc starts it, with its exact
//! command line, built from the image (its `/urunc.json` and the bundle's
//! process arguments), Lamina's tender standing in for solo5-hvt (or
//! solo5-spt) on a tap in a network namespace, then reached with curl.
//!
//! What urunc does, from its source (pkg/unikontainers): it reads the
//! annotations or, when the runtime lost them, `/urunc.json` (values in
//! base64); the guest arguments are the container's process arguments, or
//! the `cmdline` annotation when there are none; for the type `mirage` and
//! the monitor `hvt` it bind-mounts the monitor (found on the PATH as
//! solo5-hvt), /lib, /lib64 and /usr/lib into the rootfs, gives it a /dev
//! with only /dev/null, /dev/kvm and /dev/net/tun, changes root into it and
//! executes the space-split string `solo5-hvt --mem=MB
//! --net:service=TAP [--block:storage=IMG] BINARY --ipv4=IP/24
//! --ipv4-gateway=GW ARGS`, MB the memory limit in decimal megabytes or
//! 256. The tests do the same in a private mount namespace.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// urunc's default guest memory, in MB, when the pod sets no limit.
const URUNC_DEFAULT_MEM_MB: u32 = 256;
/// The tap urunc's static network mode makes (tapX_urunc, X = 0).
const URUNC_TAP: &str = "tap0_urunc";

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    eprintln!(
        "--- {program} {args:?}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `program ARGS`, which must succeed, its stdout as JSON.
fn json_of(program: &str, args: &[&str]) -> serde_json::Value {
    let output = run(program, args);
    assert!(output.status.success(), "{program} {args:?} failed");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{program} {args:?} printed no JSON: {e}"))
}

/// `lamina oci --release APP -o OUT EXTRA...`, which must succeed.
fn lamina_oci(app: &str, out: &Path, extra: &[&str]) {
    let mut args = vec!["oci", "--release", app, "-o", out.to_str().unwrap()];
    args.extend(extra);
    let output = run_lamina(&args);
    assert!(output.status.success(), "lamina {args:?} failed");
}

/// The annotations urunc reads, from the image's labels as skopeo shows
/// them and from the manifest itself; both must agree.
fn urunc_labels(image: &str) -> BTreeMap<String, String> {
    let inspect = json_of("skopeo", &["inspect", image]);
    assert_eq!(inspect["Architecture"], "amd64", "{inspect}");
    assert_eq!(inspect["Os"], "linux", "{inspect}");
    let labels: BTreeMap<String, String> =
        serde_json::from_value(inspect["Labels"].clone()).expect("labels");
    let manifest = json_of("skopeo", &["inspect", "--raw", image]);
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(manifest["annotations"].clone()).expect("annotations");
    assert_eq!(
        labels, annotations,
        "labels and manifest annotations differ"
    );
    labels
}

/// Unpacks `layout` (tag latest) with umoci; returns the bundle.
fn unpack(layout: &Path, bundle: &Path) -> PathBuf {
    let image = format!("{}:latest", layout.display());
    let output = run(
        "umoci",
        &["unpack", "--image", &image, bundle.to_str().unwrap()],
    );
    assert!(output.status.success(), "umoci unpack failed");
    bundle.to_path_buf()
}

/// What urunc takes from a bundle: the decoded `/urunc.json` and the
/// guest arguments (the process arguments, else the cmdline annotation
/// split at whitespace).
fn urunc_config(bundle: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    let text = std::fs::read(bundle.join("rootfs/urunc.json")).expect("/urunc.json in the image");
    let encoded: BTreeMap<String, String> = serde_json::from_slice(&text).expect("urunc.json");
    let decoded: BTreeMap<String, String> = encoded
        .into_iter()
        .map(|(key, value)| {
            let bytes = base64_decode(&value).unwrap_or_else(|| panic!("{key}: not base64"));
            (key, String::from_utf8(bytes).expect("UTF-8"))
        })
        .collect();
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let process_args: Vec<String> =
        serde_json::from_value(spec["process"]["args"].clone()).unwrap_or_default();
    let args = if process_args.is_empty() {
        decoded["com.urunc.unikernel.cmdline"]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    } else {
        process_args
    };
    (decoded, args)
}

/// Standard base64 with padding, as Go's `base64.StdEncoding` reads it.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Where urunc's root for the monitor has it: the host path that
/// `exec.LookPath("solo5-hvt")` finds, bind-mounted at the same place.
fn monitor_path(hypervisor: &str) -> String {
    format!("/usr/local/bin/solo5-{hypervisor}")
}

/// The command line urunc's HVT.Execve (SPT.Execve) builds for a `mirage`
/// unikernel, split at single spaces as urunc splits it.
fn urunc_command_line(
    config: &BTreeMap<String, String>,
    args: &[String],
    ip: &str,
    gateway: &str,
) -> Vec<String> {
    assert_eq!(config["com.urunc.unikernel.unikernelType"], "mirage");
    let hypervisor = &config["com.urunc.unikernel.hypervisor"];
    let mut line = format!(
        "{} --mem={URUNC_DEFAULT_MEM_MB} --net:service={URUNC_TAP}",
        monitor_path(hypervisor)
    );
    if let Some(block) = config.get("com.urunc.unikernel.block") {
        line += &format!(" --block:storage={block}");
    }
    line += &format!(" {}", config["com.urunc.unikernel.binary"]);
    line += &format!(
        " --ipv4={ip}/24 --ipv4-gateway={gateway} {}",
        args.join(" ")
    );
    line.split(' ').map(str::to_owned).collect()
}

/// What urunc's prepareMonRootfs and changeRoot do, as a script run in a
/// private mount namespace (the mounts go with it): `$1` the rootfs, `$2`
/// the tender, then the command line, whose first word says where the
/// tender goes; `$DEVICES` the
/// devices under /dev it gets (/dev/kvm for hvt only).
const ENTER_ROOTFS: &str = r#"set -e
root=$1 tender=$2 monitor=$3
shift 2
mkdir -p "$root/lib" "$root/lib64" "$root/usr/lib" "$root/dev" "$root/tmp" "$root$(dirname "$monitor")"
touch "$root$monitor"
mount --bind "$tender" "$root$monitor"
for dir in /lib /lib64 /usr/lib; do mount --bind "$dir" "$root$dir"; done
mount -t tmpfs -o nosuid,mode=755 tmpfs "$root/dev"
mount -t tmpfs -o nosuid,noexec,mode=1777 tmpfs "$root/tmp"
mkdir "$root/dev/net"
for dev in $DEVICES; do
  touch "$root/dev/$dev"
  mount --bind "/dev/$dev" "$root/dev/$dev"
done
exec chroot "$root" "$@"
"#;

/// Starts `argv` in `ns` as urunc does: `tender` mounted as the monitor
/// inside `rootfs`, the root changed to it, with the devices urunc gives
/// the monitor.
fn start_as_urunc(
    ns: &mut Namespace,
    rootfs: &Path,
    tender: &Path,
    argv: &[String],
    console: &Path,
) {
    let mut guest = ns.command("unshare");
    guest
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            ENTER_ROOTFS,
            "sh",
        ])
        .arg(rootfs)
        .arg(tender)
        .args(argv);
    let kvm = if argv[0].ends_with("hvt") { "kvm" } else { "" };
    guest.env("DEVICES", format!("null net/tun {kvm}"));
    ns.start_guest(guest, console);
}

/// A namespace whose tap is named as urunc names it.
fn urunc_namespace() -> Namespace {
    let ns = Namespace::new("lamina-oci", 240);
    let rename = ns.sh(&format!(
        "ip link set tap0 down && ip link set tap0 name {URUNC_TAP} && ip link set {URUNC_TAP} up"
    ));
    assert!(rename.status.success(), "cannot rename the tap");
    ns
}

fn can_run_unikernel(test: &str) -> bool {
    can_use_namespaces(
        test,
        &[
            "ip", "curl", "skopeo", "umoci", "unshare", "mount", "chroot",
        ],
    )
}

#[test]
fn website_image_runs_as_urunc_starts_it() {
    let test = "lamina oci website started as urunc starts it";
    if !can_run_unikernel(test) {
        return;
    }
    for target in unikernel_targets(test) {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("website-oci");
        lamina_oci("website", &layout, &["-t", target]);

        let labels = urunc_labels(&format!("oci:{}", layout.display()));
        assert_eq!(labels["com.urunc.unikernel.unikernelType"], "mirage");
        assert_eq!(labels["com.urunc.unikernel.hypervisor"], target);
        assert_eq!(
            labels["com.urunc.unikernel.binary"],
            format!("/unikernel/website.{target}")
        );
        assert_eq!(labels["com.urunc.unikernel.cmdline"], "--name=website");
        assert!(
            !labels.contains_key("com.urunc.unikernel.block"),
            "the website declares no storage"
        );

        let bundle = unpack(&layout, &dir.path().join("bundle"));
        let (config, args) = urunc_config(&bundle);
        assert_eq!(config, labels, "urunc.json says what the labels say");
        assert_eq!(args, ["--name=website"], "the image's Cmd");

        let mut ns = urunc_namespace();
        let ip = ns.guest_ip();
        let gateway = format!("10.{}.0.1", ns.subnet);
        let argv = urunc_command_line(&config, &args, &ip, &gateway);
        eprintln!("--- {target}: urunc's command line: {}", argv.join(" "));
        let console = dir.path().join("console");
        let tender = tender(target);
        start_as_urunc(&mut ns, &bundle.join("rootfs"), &tender, &argv, &console);
        let page = ns.wait_for(
            &format!("curl -s --max-time 2 http://{ip}/"),
            "<title>A library operating system in Rust · Lamina</title>",
            Duration::from_secs(60),
        );
        assert!(page.contains("</html>"), "{target}: a whole page: {page}");
        let log = std::fs::read_to_string(&console).unwrap();
        assert!(
            log.contains(&ip),
            "{target}: the guest took urunc's address: {log}"
        );
    }
}

#[test]
fn kv_image_carries_its_storage_disk_and_keeps_what_is_put() {
    let test = "lamina oci kv under urunc's command line";
    if !can_run_unikernel(test) || !kvm_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("kv-oci");
    lamina_oci("kv", &layout, &["--storage-size=8M", "--", "--port=8080"]);
    let labels = urunc_labels(&format!("oci:{}", layout.display()));
    assert_eq!(
        labels["com.urunc.unikernel.block"],
        "/unikernel/storage.img"
    );
    assert_eq!(labels["com.urunc.unikernel.cmdline"], "--port=8080");

    let bundle = unpack(&layout, &dir.path().join("bundle"));
    let rootfs = bundle.join("rootfs");
    let disk = std::fs::read(rootfs.join("unikernel/storage.img")).unwrap();
    assert_eq!(disk.len(), 8 << 20);
    assert!(disk.iter().all(|&b| b == 0), "a blank disk");
    let (config, args) = urunc_config(&bundle);
    assert_eq!(args, ["--port=8080"]);

    let mut ns = urunc_namespace();
    let ip = ns.guest_ip();
    let gateway = format!("10.{}.0.1", ns.subnet);
    let argv = urunc_command_line(&config, &args, &ip, &gateway);
    eprintln!("--- urunc's command line: {}", argv.join(" "));
    let tender = tender("hvt");
    let console = dir.path().join("console");
    start_as_urunc(&mut ns, &rootfs, &tender, &argv, &console);
    let url = format!("http://{ip}:8080/kv/greeting");
    ns.wait_for(
        &format!("curl -s --max-time 2 -o /dev/null -w '%{{http_code}}' {url}"),
        "404",
        Duration::from_secs(60),
    );
    let put = ns.exec(&[
        "curl",
        "-s",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "--data-binary",
        "hello from an OCI image",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&put.stdout), "201");
    let get = ns.exec(&["curl", "-s", "--max-time", "5", &url]);
    assert_eq!(
        String::from_utf8_lossy(&get.stdout),
        "hello from an OCI image"
    );
    // The disk in the unpacked rootfs now holds a store.
    let disk = std::fs::read(rootfs.join("unikernel/storage.img")).unwrap();
    assert!(
        disk.iter().any(|&b| b != 0),
        "the store was written to the image's disk"
    );
}

#[test]
fn tar_output_is_the_same_image_for_skopeo_and_docker_archives() {
    let test = "lamina oci -o OUT.tar";
    if !tools_or_skip(test, &["skopeo"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let tar = dir.path().join("website.tar");
    lamina_oci("website", &layout, &["--tag=example.test/web:v1"]);
    lamina_oci("website", &tar, &["--tag=example.test/web:v1"]);
    // Built twice, the same digests: nothing in the image depends on when
    // or where it was written.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "example.test/web:v1"
    );
    for image in [
        format!("oci:{}:v1", layout.display()),
        format!("oci-archive:{}:v1", tar.display()),
    ] {
        let inspect = json_of("skopeo", &["inspect", &image]);
        assert_eq!(inspect["Digest"], digest.as_str(), "{image}");
        assert_eq!(
            inspect["Labels"]["com.urunc.unikernel.unikernelType"], "mirage",
            "{image}"
        );
    }
    // `docker load` reads the same tar through its manifest.json.
    let docker = format!("docker-archive:{}", tar.display());
    let inspect = json_of("skopeo", &["inspect", &docker]);
    assert_eq!(
        inspect["Labels"]["com.urunc.unikernel.binary"],
        "/unikernel/website.hvt"
    );
    let copied = dir.path().join("copied");
    let copy = run(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{}:v1", tar.display()),
            &format!("oci:{}:v1", copied.display()),
        ],
    );
    assert!(copy.status.success(), "skopeo copy of the archive failed");
}

#[test]
fn bad_requests_get_clear_errors_before_any_build() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("mine.txt"), b"keep").unwrap();
    let under_file = file.join("out");
    let x = dir.path().join("x");
    let x = x.to_str().unwrap();
    let cases: [(Vec<&str>, i32, &str); 7] = [
        (
            vec!["oci", "no-such-app", "-o", x],
            2,
            "no application at 'no-such-app'",
        ),
        (
            vec!["oci", "website", "-o", under_file.to_str().unwrap()],
            1,
            "cannot create the directory",
        ),
        (
            vec!["oci", "website", "-o", busy.to_str().unwrap()],
            2,
            "neither empty nor an OCI image layout",
        ),
        (
            vec!["oci", "-t", "virtio", "website", "-o", x],
            2,
            "invalid value 'virtio'",
        ),
        (
            vec!["oci", "website", "--tag=Web", "-o", x],
            2,
            "image name \"Web\"",
        ),
        (
            vec!["oci", "website", "-o", x, "--", "--greeting=two words"],
            2,
            "none can be empty or hold whitespace",
        ),
        (
            vec!["oci", "website", "--storage=/no/such/disk.img", "-o", x],
            1,
            "cannot read the storage image /no/such/disk.img",
        ),
    ];
    for (args, status, expected) in cases {
        let output = run_lamina(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("lamina: built"),
            "{args:?} built before refusing"
        );
    }
    assert_eq!(std::fs::read(busy.join("mine.txt")).unwrap(), b"keep");
    assert!(!dir.path().join("x").exists(), "nothing written on refusal");
}
