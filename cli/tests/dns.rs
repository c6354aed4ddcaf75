//! The DNS example (examples/dns) against real clients, booted once on each
//! target: unix on loopback, spt and hvt on a tap in a network namespace,
//! virtio under QEMU on a tap. On each, `dig` (BIND's) and `kdig` (Knot's)
//! ask for every kind of answer over UDP and TCP, with and without EDNS,
//! with a 512-byte payload that forces TC and the retry over TCP, several
//! queries on one connection, and zone transfers allowed and refused; then
//! dnspython (dns_client.py) pipelines queries, compares transfers with the
//! zone files and sends malformed queries, after which the server must still
//! answer. A broken zone file fails the build with its file and line.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The tools every test here needs; skipped (or failed, under CI) without.
fn clients_or_skip(test: &str) -> bool {
    if !tools_or_skip(test, &["dig", "kdig", "python3"]) {
        return false;
    }
    let dnspython = Command::new("python3")
        .args(["-c", "import dns.message, dns.query, dns.zone"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !dnspython {
        skip_or_fail(
            test,
            "dnspython is not installed for python3 (scripts/setup.sh installs python3-dnspython)",
        );
    }
    dnspython
}

fn zone_dir() -> PathBuf {
    root().join("examples/dns/zones")
}

/// A booted DNS example and how its clients reach it: from the host
/// (unix) or from inside the namespace holding the guest's tap.
struct Booted {
    target: &'static str,
    address: String,
    port: u16,
    /// A local address the clients can use that is not allowed transfers.
    stranger: String,
    /// Where the server's console (its query log) goes.
    console: PathBuf,
    ns: Option<Namespace>,
    unix: Option<UnixServer>,
    _dir: tempfile::TempDir,
}

/// `lamina run -t unix dns`, its output to a file, stopped on drop.
struct UnixServer(Child);

impl Drop for UnixServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.0.wait();
    }
}

impl Booted {
    /// Runs `args` where the clients are, to completion.
    fn run(&self, args: &[&str]) -> Output {
        match &self.ns {
            Some(ns) => ns.command(args[0]).args(&args[1..]).output().unwrap(),
            None => Command::new(args[0]).args(&args[1..]).output().unwrap(),
        }
    }

    fn at(&self) -> String {
        format!("@{}", self.address)
    }

    /// `dig` or `kdig` (`tool`) at the server with `args`, parsed.
    fn ask(&self, tool: &str, args: &[&str]) -> Reply {
        let (at, port) = (self.at(), self.port.to_string());
        let limits: &[&str] = match tool {
            "kdig" => &["+timeout=2", "+retry=1"],
            _ => &["+time=2", "+tries=2"],
        };
        let all = [&[tool, &at, "-p", &port][..], limits, args].concat();
        let output = self.run(&all);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let reply = Reply::parse(&text);
        assert!(
            output.status.success() || reply.status.is_some(),
            "{}: {all:?} failed: {text}{}",
            self.target,
            String::from_utf8_lossy(&output.stderr)
        );
        reply
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        match (&mut self.ns, &mut self.unix) {
            (Some(ns), _) => ns.guest_alive(),
            (None, Some(unix)) => matches!(unix.0.try_wait(), Ok(None)),
            _ => false,
        }
    }

    /// Waits until the server answers a query over UDP.
    fn wait_until_answering(&mut self, limit: Duration) {
        let start = Instant::now();
        let port = self.port.to_string();
        while start.elapsed() < limit {
            let out = self.run(&[
                "dig",
                &self.at(),
                "-p",
                &port,
                "+short",
                "+time=1",
                "+tries=1",
                "www.example.com",
            ]);
            if String::from_utf8_lossy(&out.stdout).contains("192.0.2.10") {
                eprintln!("{}: answering after {:?}", self.target, start.elapsed());
                return;
            }
            assert!(
                self.alive(),
                "{}: the server exited:\n{}",
                self.target,
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: no answer within {limit:?}:\n{}",
            self.target,
            self.console()
        );
    }
}

/// The TCP limits the example boots with, which dns_client.py checks.
const TCP_LIMITS: [&str; 2] = ["--idle-timeout=2s", "--max-connections=16"];

/// Boots the example on `target`, allowing transfers to the clients'
/// address, logging queries.
fn boot(target: &'static str) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    if target == "unix" {
        let port = free_port();
        let log = std::fs::File::create(&console).unwrap();
        let child = lamina()
            .args(["run", "--release", "-t", "unix", "examples/dns", "--"])
            .arg(format!("--port={port}"))
            .args(["--axfr-allow=127.0.0.1", "--log-queries"])
            .args(TCP_LIMITS)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut booted = Booted {
            target,
            address: "127.0.0.1".into(),
            port,
            stranger: "127.0.0.2".into(),
            console,
            ns: None,
            unix: Some(UnixServer(child)),
            _dir: dir,
        };
        // The first run builds the example.
        booted.wait_until_answering(Duration::from_secs(600));
        return booted;
    }
    let mut ns = Namespace::new("lamina-dns", 150);
    // A second host address on the tap, not allowed transfers.
    let stranger = format!("10.{}.0.3", ns.subnet);
    let added = ns.sh(&format!("ip addr add {stranger}/24 dev tap0"));
    assert!(added.status.success());
    let guest_args = [
        format!("--ipv4={}/24", ns.guest_ip()),
        format!("--axfr-allow=10.{}.0.1", ns.subnet),
        "--log-queries".into(),
        TCP_LIMITS[0].into(),
        TCP_LIMITS[1].into(),
    ];
    let guest = if target == "virtio" {
        image("virtio", "examples/dns"); // built outside the namespace
        let lamina = lamina();
        let mut guest = ns.command(lamina.get_program());
        guest
            .args(["run", "--release", "-t", "virtio", "--machine", "microvm"])
            .args(["examples/dns", "--", "--net:service=tap0"])
            .args(&guest_args)
            .envs(lamina.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .current_dir(root());
        guest
    } else {
        let mut guest = ns.command(tender(target));
        guest
            .args(["--mem=16", "--net:service=tap0"])
            .arg(image(target, "examples/dns"))
            .args(&guest_args);
        guest
    };
    ns.start_guest(guest, &console);
    let mut booted = Booted {
        target,
        address: ns.guest_ip(),
        port: 53,
        stranger,
        console,
        ns: Some(ns),
        unix: None,
        _dir: dir,
    };
    booted.wait_until_answering(Duration::from_secs(120));
    booted
}

/// One resource record as dig or kdig prints it.
#[derive(Debug, Clone)]
struct Record {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

/// A reply as dig or kdig prints it (their formats differ in punctuation).
#[derive(Debug, Default)]
struct Reply {
    status: Option<String>,
    flags: Vec<String>,
    /// The EDNS line(s), if the reply had an OPT record.
    edns: Option<String>,
    question: Vec<String>,
    answer: Vec<Record>,
    authority: Vec<Record>,
    additional: Vec<Record>,
    text: String,
}

impl Reply {
    fn parse(text: &str) -> Reply {
        let mut reply = Reply {
            text: text.to_owned(),
            ..Reply::default()
        };
        // A transfer is printed as records alone, without sections.
        let transfer = !text.contains("SECTION:");
        let mut section = if transfer { "answer" } else { "" };
        let mut edns_next = false;
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(rest) = trimmed.split("status: ").nth(1) {
                let status = rest.split([',', ';']).next().unwrap_or("").trim();
                reply.status = Some(status.to_owned());
            }
            let lower = trimmed.to_ascii_lowercase();
            if let Some(rest) = lower.strip_prefix(";; flags: ") {
                let flags = rest.split(';').next().unwrap_or("");
                reply.flags = flags.split_whitespace().map(String::from).collect();
            }
            if trimmed.starts_with("; EDNS:") || edns_next {
                reply.edns = Some(trimmed.to_owned());
                edns_next = false;
            }
            if trimmed == ";; EDNS PSEUDOSECTION:" {
                edns_next = true;
            }
            if trimmed.ends_with("SECTION:") {
                section = if trimmed.contains("QUESTION") {
                    "question"
                } else if trimmed.contains("ANSWER") {
                    "answer"
                } else if trimmed.contains("AUTHORITY") {
                    "authority"
                } else if trimmed.contains("ADDITIONAL") {
                    "additional"
                } else {
                    ""
                };
                continue;
            }
            if trimmed.is_empty() {
                if !transfer {
                    section = "";
                }
                continue;
            }
            if section == "question" {
                let question = trimmed.trim_start_matches(';').trim();
                reply
                    .question
                    .push(question.split_whitespace().collect::<Vec<_>>().join(" "));
                continue;
            }
            if trimmed.starts_with(';') || section.is_empty() {
                continue;
            }
            let mut fields = trimmed.split_whitespace();
            let (Some(name), Some(ttl), Some(_class), Some(rtype)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let record = Record {
                name: name.to_owned(),
                ttl: ttl.parse().unwrap_or(u32::MAX),
                rtype: rtype.to_owned(),
                data: fields.collect::<Vec<_>>().join(" "),
            };
            match section {
                "answer" => reply.answer.push(record),
                "authority" => reply.authority.push(record),
                _ => reply.additional.push(record),
            }
        }
        reply
    }

    fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("(none)")
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The data of the answer's records of `rtype`, sorted.
    fn data(&self, rtype: &str) -> Vec<String> {
        let mut data: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        data.sort();
        data
    }
}

/// Asserts what a reply must be, naming the target, tool and query.
macro_rules! expect {
    ($cond:expr, $context:expr, $reply:expr) => {
        assert!(
            $cond,
            "{}: {} ({}):\n{}",
            $context,
            stringify!($cond),
            $reply.status(),
            $reply.text
        )
    };
}

/// Every kind of answer, asked with `tool` and `extra` arguments (`+tcp`,
/// `+noedns`...).
fn every_answer_kind(server: &Booted, tool: &str, extra: &[&str]) {
    let context = format!("{} {tool} {extra:?}", server.target);
    let ask = |args: &[&str]| server.ask(tool, &[extra, args].concat());
    let soa_of = |reply: &Reply, zone: &str| {
        reply
            .authority
            .iter()
            .any(|r| r.rtype == "SOA" && r.name == zone && r.ttl == 300)
    };

    let r = ask(&["www.example.com", "A"]);
    expect!(r.status() == "NOERROR" && r.has_flag("aa"), context, r);
    expect!(r.data("A") == ["192.0.2.10", "192.0.2.11"], context, r);
    let r = ask(&["www.example.com", "AAAA"]);
    expect!(r.data("AAAA") == ["2001:db8::10"], context, r);

    // A chain of CNAMEs inside the zone, followed to the addresses.
    let r = ask(&["chain.example.com", "A"]);
    let types: Vec<&str> = r.answer.iter().map(|a| a.rtype.as_str()).collect();
    expect!(types == ["CNAME", "CNAME", "CNAME", "A", "A"], context, r);
    let targets: Vec<&str> = r.answer[..3].iter().map(|a| a.data.as_str()).collect();
    expect!(
        targets
            == [
                "chain2.example.com.",
                "chain3.example.com.",
                "www.example.com."
            ],
        context,
        r
    );

    let r = ask(&["example.com", "MX"]);
    expect!(
        r.data("MX") == ["10 mail.example.com.", "20 mail.example.net."],
        context,
        r
    );
    let r = ask(&["text.example.com", "TXT"]);
    expect!(
        r.data("TXT") == [r#""first string" "second string" "with \"quotes\" and a ; semicolon""#],
        context,
        r
    );
    let r = ask(&["_sip._tcp.example.com", "SRV"]);
    expect!(r.data("SRV") == ["10 60 5060 sip.example.com."], context, r);
    let r = ask(&["-x", "192.0.2.10"]);
    expect!(
        r.data("PTR") == ["www.example.com."] && r.has_flag("aa"),
        context,
        r
    );
    let r = ask(&["example.com", "CAA"]);
    expect!(
        r.data("CAA")
            == [
                r#"0 issue "letsencrypt.org""#,
                r#"128 iodef "mailto:security@example.com""#
            ],
        context,
        r
    );
    let r = ask(&["opaque.example.com", "TYPE65280"]);
    expect!(
        r.data("TYPE65280")
            .iter()
            .all(|d| d.eq_ignore_ascii_case(r"\# 6 C0000201ABCD"))
            && r.answer.len() == 1,
        context,
        r
    );

    // NXDOMAIN and NODATA: the SOA in the authority section, with the
    // negative TTL (RFC 2308: the smaller of its TTL and its MINIMUM).
    let r = ask(&["nosuch.example.com", "A"]);
    expect!(
        r.status() == "NXDOMAIN" && r.answer.is_empty() && soa_of(&r, "example.com."),
        context,
        r
    );
    for (name, rtype) in [
        ("www.example.com", "MX"),
        ("ent.example.com", "A"),
        ("exists.wild.example.com", "TXT"),
    ] {
        let r = ask(&[name, rtype]);
        expect!(
            r.status() == "NOERROR" && r.answer.is_empty() && soa_of(&r, "example.com."),
            context,
            r
        );
    }

    // A wildcard, at one level and two below its parent.
    for name in ["anything.wild.example.com.", "a.b.wild.example.com."] {
        let r = ask(&[name, "A"]);
        expect!(
            r.status() == "NOERROR" && r.answer.len() == 1 && r.answer[0].name == name,
            context,
            r
        );
        expect!(r.data("A") == ["192.0.2.99"], context, r);
    }
    let r = ask(&["exists.wild.example.com", "A"]);
    expect!(r.data("A") == ["192.0.2.98"], context, r);

    // A referral: not authoritative, the NS set, the glue.
    let r = ask(&["www.sub.example.com", "A"]);
    expect!(
        r.status() == "NOERROR" && !r.has_flag("aa") && r.answer.is_empty(),
        context,
        r
    );
    let mut ns: Vec<&str> = r
        .authority
        .iter()
        .filter(|a| a.rtype == "NS")
        .map(|a| a.data.as_str())
        .collect();
    ns.sort();
    expect!(
        ns == ["ns.example.net.", "ns1.sub.example.com."],
        context,
        r
    );
    expect!(
        r.additional
            .iter()
            .any(|a| a.name == "ns1.sub.example.com." && a.rtype == "A" && a.data == "192.0.2.153"),
        context,
        r
    );

    // ANY: a minimal answer (RFC 8482), one RRset.
    let r = ask(&["example.com", "ANY"]);
    let mut kinds: Vec<&str> = r.answer.iter().map(|a| a.rtype.as_str()).collect();
    kinds.dedup();
    expect!(r.status() == "NOERROR" && kinds.len() == 1, context, r);

    // Outside every zone: REFUSED. The second zone answers too.
    let r = ask(&["www.example.net", "A"]);
    expect!(r.status() == "REFUSED" && r.answer.is_empty(), context, r);
    let r = ask(&["www.example.org", "A"]);
    expect!(
        r.data("CNAME") == ["example.org."] && r.data("A") == ["192.0.2.200"],
        context,
        r
    );
}

/// EDNS, TC and the retry over TCP, case, transfers, several queries on
/// one connection: the checks that are not a table of answers.
fn protocol_details(server: &Booted) {
    let context = server.target;
    // EDNS(0) when asked, not when not.
    let r = server.ask("dig", &["www.example.com"]);
    expect!(
        r.edns.as_deref().is_some_and(|e| e.contains("version: 0")),
        context,
        r
    );
    let r = server.ask("dig", &["+noedns", "www.example.com"]);
    expect!(r.edns.is_none() && r.answer.len() == 2, context, r);
    let r = server.ask("dig", &["+dnssec", "www.example.com"]);
    expect!(
        r.edns.as_deref().is_some_and(|e| e.contains("flags: do")),
        context,
        r
    );
    let r = server.ask("dig", &["+edns=1", "+noednsnegotiation", "www.example.com"]);
    expect!(r.status() == "BADVERS", context, r);

    // 40 addresses do not fit 512 bytes: TC, and dig and kdig retry over
    // TCP and get them all.
    for payload in [&["+noedns"][..], &["+bufsize=512"]] {
        let r = server.ask("dig", &[payload, &["+ignore", "big.example.com"]].concat());
        expect!(r.has_flag("tc") && r.answer.len() < 40, context, r);
        let r = server.ask("dig", &[payload, &["big.example.com"]].concat());
        expect!(
            r.text.contains("Truncated, retrying in TCP mode") && r.data("A").len() == 40,
            context,
            r
        );
    }
    let r = server.ask("kdig", &["+bufsize=512", "big.example.com"]);
    expect!(
        r.data("A").len() == 40 && r.text.contains("(TCP)"),
        context,
        r
    );
    let r = server.ask("kdig", &["+bufsize=4096", "big.example.com"]);
    expect!(
        r.data("A").len() == 40 && r.text.contains("(UDP)") && !r.has_flag("tc"),
        context,
        r
    );

    // The question's case, kept.
    let r = server.ask("dig", &["WwW.ExAmPlE.cOm", "A"]);
    expect!(
        r.question
            .first()
            .is_some_and(|q| q.starts_with("WwW.ExAmPlE.cOm. IN A"))
            && r.answer.len() == 2,
        context,
        r
    );

    // Transfers: allowed from the clients' address, SOA first and last;
    // refused from another.
    for tool in ["dig", "kdig"] {
        let r = server.ask(tool, &["example.com", "AXFR"]);
        let soa_ends = r.answer.first().is_some_and(|a| a.rtype == "SOA")
            && r.answer.last().is_some_and(|a| a.rtype == "SOA");
        expect!(
            soa_ends
                && r.data("A").len() > 40
                && r.answer.iter().any(|a| a.name == "*.wild.example.com."),
            context,
            r
        );
    }
    let stranger = ["-b", &server.stranger, "example.com", "AXFR"];
    let r = server.ask("dig", &stranger);
    expect!(
        r.text.contains("Transfer failed") && r.answer.is_empty(),
        context,
        r
    );

    // kdig: several queries over one TCP connection, answered on it; the
    // query log shows them coming from one client port. (Names asked over
    // TCP nowhere else, so their log lines are this connection's.)
    let r = server.ask(
        "kdig",
        &[
            "+tcp",
            "+keepopen",
            "mail.example.com",
            "A",
            "ns1.example.com",
            "AAAA",
            "sip.example.com",
            "A",
        ],
    );
    expect!(
        r.data("A") == ["192.0.2.25", "192.0.2.50"] && r.data("AAAA") == ["2001:db8::53"],
        context,
        r
    );
    let queries = [
        "mail.example.com. A",
        "ns1.example.com. AAAA",
        "sip.example.com. A",
    ];
    // The console may reach its file a moment after the answers.
    let start = Instant::now();
    loop {
        let console = server.console();
        let peers: Vec<&str> = queries
            .iter()
            .filter_map(|query| {
                console
                    .lines()
                    .find(|l| l.contains(&format!(" tcp {query} NOERROR")))
                    .and_then(|l| l.split(" tcp ").next())
                    .and_then(|l| l.split_whitespace().last())
            })
            .collect();
        if peers.len() == 3 || start.elapsed() > Duration::from_secs(5) {
            assert!(
                peers.len() == 3 && peers.iter().all(|p| *p == peers[0]),
                "{context}: three queries, not one connection: {peers:?}\n{console}"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// dns_client.py: pipelining, transfers against the zone files, malformed
/// queries.
fn dnspython(server: &Booted) {
    let script = root().join("cli/tests/dns_client.py");
    let port = server.port.to_string();
    let output = server.run(&[
        "python3",
        script.to_str().unwrap(),
        &server.address,
        &port,
        zone_dir().to_str().unwrap(),
        &server.stranger,
        "2",
        "16",
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("--- dns_client.py on {}:\n{text}", server.target);
    assert!(
        output.status.success(),
        "{}: dns_client.py failed:\n{text}{}\nconsole:\n{}",
        server.target,
        String::from_utf8_lossy(&output.stderr),
        server.console()
    );
}

/// The whole check of one target: one boot, many queries.
fn serves_real_clients(target: &'static str) {
    let mut server = boot(target);
    let started = Instant::now();
    for (tool, extra) in [
        ("dig", &[][..]),
        ("dig", &["+tcp"]),
        ("dig", &["+noedns"]),
        ("kdig", &[]),
        ("kdig", &["+tcp"]),
    ] {
        every_answer_kind(&server, tool, extra);
    }
    protocol_details(&server);
    dnspython(&server);
    assert!(server.alive(), "{target}: the server exited");
    // The log has a line per query.
    let console = server.console();
    assert!(
        console.contains(" udp www.example.com. A NOERROR ")
            && console.contains(" tcp big.example.com. A NOERROR "),
        "{target}: no query log:\n{console}"
    );
    eprintln!("{target}: checked in {:?}", started.elapsed());
}

#[test]
fn dns_serves_real_clients_on_unix() {
    if clients_or_skip("dns on unix") {
        serves_real_clients("unix");
    }
}

#[test]
fn dns_serves_real_clients_on_spt() {
    if clients_or_skip("dns on spt") && can_use_namespaces("dns on spt", &["ip"]) {
        serves_real_clients("spt");
    }
}

#[test]
fn dns_serves_real_clients_on_hvt() {
    if clients_or_skip("dns on hvt")
        && can_use_namespaces("dns on hvt", &["ip"])
        && kvm_or_skip("dns on hvt")
    {
        serves_real_clients("hvt");
    }
}

#[test]
fn dns_serves_real_clients_on_virtio() {
    if clients_or_skip("dns on virtio")
        && can_use_namespaces("dns on virtio", &["ip"])
        && tools_or_skip("dns on virtio", &["qemu-system-x86_64"])
    {
        serves_real_clients("virtio");
    }
}

/// A zone file with a mistake fails the build, naming the file and line.
#[test]
fn a_bad_zone_fails_the_build_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(zone_dir()).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    let broken = dir.path().join("example.org.zone");
    let text = std::fs::read_to_string(&broken).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("192.0.2.200"))
        .unwrap()
        + 1;
    std::fs::write(&broken, text.replace("192.0.2.200", "192.0.2.300")).unwrap();
    let output = lamina()
        .args(["build", "--release", "-t", "unix", "examples/dns"])
        .env("LAMINA_DNS_ZONES", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "built with a broken zone");
    let place = format!("example.org.zone:{line}");
    assert!(stderr.contains(&place), "no {place} in:\n{stderr}");
    assert!(
        stderr.contains("192.0.2.300") || stderr.to_lowercase().contains("address"),
        "{stderr}"
    );
}
