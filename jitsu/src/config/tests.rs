use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "jitsu.toml", Path::new("/etc/lamina"))
}

const WEBSITE: &str = r#"
dns = "127.0.0.1:5353"

[[service]]
name = "www.lamina.test."
app = "website"
address = "127.0.0.2"
ports = ["80", "8443:443", "53/udp"]
ttl = 10
stop = "pause"
"#;

#[test]
fn a_good_file_reads_with_its_defaults() {
    let config = parse(WEBSITE).unwrap();
    assert_eq!(config.dns, "127.0.0.1:5353".parse().unwrap());
    assert_eq!(config.status, DEFAULT_STATUS.parse().unwrap());
    assert_eq!(config.upstream, None);
    assert_eq!(config.network, Network::User);
    let www = &config.services[0];
    assert_eq!(www.name, "www.lamina.test");
    assert_eq!(www.wire_name, b"\x03www\x06lamina\x04test\x00");
    assert_eq!(www.app, Application::Project("website".into()));
    assert_eq!(www.ttl, Duration::from_secs(10));
    assert_eq!(www.idle, Duration::from_secs(20));
    assert_eq!(www.stop, StopMode::Pause);
    assert_eq!(www.net_device, "service");
    let ports: Vec<String> = www.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(ports, ["80:80/tcp", "8443:443/tcp", "53:53/udp"]);
}

#[test]
fn images_are_relative_to_the_file() {
    let config = parse(
        "[[service]]\nname = \"a.test\"\nimage = \"img/a.hvt\"\naddress = \"127.0.0.9\"\nports = [\"80\"]\n",
    )
    .unwrap();
    assert_eq!(
        config.services[0].image.as_deref(),
        Some(Path::new("/etc/lamina/img/a.hvt"))
    );
}

/// Each bad file is refused with the line of the bad value and a reason.
#[test]
fn bad_values_name_their_line() {
    let service =
        |body: &str| format!("network = \"user\"\n[[service]]\nname = \"a.test\"\n{body}\n");
    let cases = [
        (service("app = \"x\"\naddress = \"10.0.0.2\"\nports = [\"80\"]"), 5, "loopback"),
        (service("app = \"x\"\naddress = \"127.0.0.300\"\nports = [\"80\"]"), 5, "IPv4"),
        (service("app = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80:0\"]"), 6, "1-65535"),
        (service("app = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80/sctp\"]"), 6, "sctp"),
        (service("app = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\nmem = 1"), 7, "2 to 4096"),
        (service("app = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\nttl = -1"), 7, "seconds"),
        (service("app = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\nstop = \"freeze\""), 7, "freeze"),
        (service("app = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\ncolour = 1"), 7, "colour"),
        (service("app = \"x\"\naddress = \"127.0.0.2\""), 3, "no ports"),
        (service("address = \"127.0.0.2\"\nports = [\"80\"]"), 3, "no app"),
        (service("app = \"x\"\nimage = \"y\"\naddress = \"127.0.0.2\"\nports = [\"80\"]"), 4, "not both"),
        (service("app = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\nargs = [\"--ipv4=1.2.3.4/8\"]"), 3, "--ipv4"),
        (String::from("dns = \"localhost\"\n[[service]]\nname = \"a.test\"\napp = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\n"), 1, "ADDRESS:PORT"),
        (String::from("dns = \"127.0.0.1:53\"\n"), 2, "no [[service]]"),
        (String::from("[[service]]\nname = \"bad..name\"\napp = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\n"), 2, "DNS name"),
        (String::from("network = \"tap\"\n[[service]]\nname = \"a.test\"\napp = \"x\"\naddress = \"10.1.0.2\"\n"), 5, "bridge"),
        (String::from("this is not toml"), 1, ""),
    ];
    for (text, line, why) in cases {
        let error = parse(&text).expect_err(&text);
        assert_eq!(error.line, line, "{text}\n{error}");
        assert!(error.to_string().contains(why), "{text}\n{error}");
        assert!(error.to_string().starts_with("jitsu.toml:"), "{error}");
    }
}

#[test]
fn names_and_addresses_are_unique() {
    let two = |second_name: &str, second_address: &str| {
        format!(
            "[[service]]\nname = \"a.test\"\napp = \"x\"\naddress = \"127.0.0.2\"\nports = [\"80\"]\n\
             [[service]]\nname = \"{second_name}\"\napp = \"x\"\naddress = \"{second_address}\"\nports = [\"80\"]\n"
        )
    };
    assert!(parse(&two("b.test", "127.0.0.3")).is_ok());
    let error = parse(&two("A.test", "127.0.0.3")).unwrap_err();
    assert_eq!(error.line, 7, "{error}");
    let error = parse(&two("b.test", "127.0.0.2")).unwrap_err();
    assert_eq!(error.line, 9, "{error}");
}
