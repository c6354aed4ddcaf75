use super::*;
use alloc::string::ToString;
use alloc::vec;

crate::boot_args! {
    /// Test application
    pub struct TestArgs {
        /// A greeting.
        pub greeting: String = "Hello",
        /// How many.
        pub times: u32 = "3",
        /// Talk more.
        pub verbose: bool = "false",
        /// Gateway.
        pub ipv4_gateway: Option<core::net::Ipv4Addr> = "",
        /// Idle limit.
        pub idle: core::time::Duration = "30s",
        /// How long a name may be, in bytes: longer ones are refused with a message that
        /// names the argument, the value and the limit, so the whole paragraph is shown.
        ///
        /// A second paragraph, for the source only.
        pub name_limit: u32 = "64",
    }
}

fn parse_test(args: &[&str]) -> Result<TestArgs, ArgError> {
    let mut a = TestArgs::defaults();
    parse("test", args, &mut [&mut a])?;
    Ok(a)
}

#[test]
fn defaults_apply() {
    let a = parse_test(&[]).unwrap();
    assert_eq!(a.greeting, "Hello");
    assert_eq!(a.times, 3);
    assert!(!a.verbose);
    assert_eq!(a.ipv4_gateway, None);
    assert_eq!(a.idle, core::time::Duration::from_secs(30));
}

#[test]
fn both_value_forms_and_flags() {
    let a = parse_test(&[
        "--times=7",
        "--greeting",
        "Hi there",
        "--verbose",
        "--ipv4-gateway=10.0.0.1",
        "--idle=250ms",
    ])
    .unwrap();
    assert_eq!(a.times, 7);
    assert_eq!(a.greeting, "Hi there");
    assert!(a.verbose);
    assert_eq!(a.ipv4_gateway, Some(core::net::Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(a.idle, core::time::Duration::from_millis(250));
    // A flag does not swallow the next word; an explicit value is honoured.
    assert!(matches!(parse_test(&["--verbose", "x"]), Err(ArgError::Positional(p)) if p == "x"));
    assert!(!parse_test(&["--verbose=false"]).unwrap().verbose);
    // Later wins.
    assert_eq!(parse_test(&["--times=1", "--times=2"]).unwrap().times, 2);
}

#[test]
fn mistakes_are_reported_precisely() {
    assert_eq!(
        parse_test(&["--colour=red"]).unwrap_err(),
        ArgError::Unknown("colour".into())
    );
    assert_eq!(
        parse_test(&["--times"]).unwrap_err(),
        ArgError::MissingValue("times".into())
    );
    let err = parse_test(&["--times=many"]).unwrap_err();
    assert!(
        matches!(&err, ArgError::Invalid { name, value, .. } if name == "times" && value == "many")
    );
    assert!(err.to_string().contains("'many'"));
    assert!(matches!(
        parse_test(&["--times=99999999999"]),
        Err(ArgError::Invalid { .. })
    ));
    assert!(matches!(
        parse_test(&["--ipv4-gateway=10.0.0"]),
        Err(ArgError::Invalid { .. })
    ));
    assert!(matches!(
        parse_test(&["--idle=5 fortnights"]),
        Err(ArgError::Invalid { .. })
    ));
    assert!(matches!(
        parse_test(&["stray"]),
        Err(ArgError::Positional(_))
    ));
    assert!(matches!(parse_test(&["--"]), Err(ArgError::Positional(_))));
    assert!(matches!(
        parse_test(&["--=x"]),
        Err(ArgError::Positional(_))
    ));
}

#[test]
fn help_lists_every_section() {
    let mut app = TestArgs::defaults();
    let mut rt = common::RuntimeArgs::defaults();
    let err = parse("hello", &["--times=2", "--help"], &mut [&mut app, &mut rt]).unwrap_err();
    let ArgError::Help(text) = err else {
        panic!("expected help")
    };
    assert!(text.starts_with("usage: hello"));
    assert!(text.contains("Test application:"));
    assert!(text.contains("--times=N"));
    assert!(text.contains("How many. [default: 3]"));
    assert!(text.contains("--ipv4-gateway=ADDR"));
    assert!(text.contains("--verbose "));
    assert!(text.contains("Runtime:"));
    assert!(text.contains("--log=TEXT"));
    // A doc comment's whole first paragraph, wrapped, its default last.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("  --name-limit=N"))
        .unwrap();
    assert_eq!(
        &lines[at..at + 3],
        [
            "  --name-limit=N               How long a name may be, in bytes: longer ones are refused with a",
            "                               message that names the argument, the value and the limit, so the",
            "                               whole paragraph is shown. [default: 64]",
        ]
    );
    assert!(!text.contains("second paragraph"));
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
}

#[test]
fn sections_share_a_command_line() {
    let mut app = TestArgs::defaults();
    let mut rt = common::RuntimeArgs::defaults();
    parse(
        "t",
        &["--log=debug", "--times=4", "--name=unikernel-7"],
        &mut [&mut app, &mut rt],
    )
    .unwrap();
    assert_eq!((app.times, rt.log.as_str()), (4, "debug"));
    assert_eq!(rt.name.as_deref(), Some("unikernel-7"));
}

#[test]
fn command_lines_split_like_a_shell() {
    assert_eq!(
        split_command_line("  a  b\t c ").unwrap(),
        vec!["a", "b", "c"]
    );
    assert_eq!(
        split_command_line(r#"--greeting="Hello world" --x='a b' --y=c\ d"#).unwrap(),
        vec!["--greeting=Hello world", "--x=a b", "--y=c d"]
    );
    assert_eq!(split_command_line(r#"--e="""#).unwrap(), vec!["--e="]);
    // Said as what it is, not as an argument named by the error.
    assert_eq!(
        split_command_line("--x=\"open").unwrap_err().to_string(),
        "the command line has a quote that is not closed: quote a value with \" or ' and escape with \\"
    );
    assert_eq!(
        split_command_line("trailing\\").unwrap_err(),
        ArgError::Unsplittable("ends in a backslash")
    );
    assert!(split_command_line("").unwrap().is_empty());
}

#[test]
fn arbitrary_input_never_panics() {
    // A small deterministic fuzz: every split and parse of mangled input
    // returns, never panics.
    let pieces = [
        "--", "=", "times", "help", "x", "\"", "'", "\\", " ", "7", "-", "é", "\0",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..5000 {
        let mut line = String::new();
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            line.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        if let Ok(words) = split_command_line(&line) {
            let _ = parse_test(&words.iter().map(|w| w.as_str()).collect::<Vec<_>>());
        }
        seed = seed.wrapping_add(1);
    }
}

crate::boot_args! {
    /// A range that depends on another argument.
    #[check(RangeArgs::check)]
    pub struct RangeArgs {
        /// Lowest.
        pub low: u32 = "1",
        /// Highest.
        pub high: u32 = "10",
    }
}

impl RangeArgs {
    fn check(&self) -> Result<(), ArgError> {
        if self.low > self.high {
            return Err(ArgError::Invalid {
                name: "low".to_string(),
                value: self.low.to_string(),
                reason: "must not exceed --high".to_string(),
            });
        }
        Ok(())
    }
}

/// A section's check runs once every argument is taken, so the order of
/// arguments that depend on each other does not matter.
#[test]
fn sections_check_themselves_after_parsing() {
    let mut args = RangeArgs::defaults();
    parse("test", &["--low=20", "--high=30"], &mut [&mut args]).unwrap();
    assert_eq!((args.low, args.high), (20, 30));
    let mut args = RangeArgs::defaults();
    let error = parse("test", &["--low=20"], &mut [&mut args]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid value '20' for '--low': must not exceed --high"
    );
    // Help is not a failure and is not checked.
    let mut args = RangeArgs::defaults();
    assert!(matches!(
        parse("test", &["--low=20", "--help"], &mut [&mut args]),
        Err(ArgError::Help(_))
    ));
}
