//! Hello: the smallest Lamina application.
//!
//! It prints a greeting, given as a boot argument, a number of times, one a
//! second, then exits with status 0. Run it with
//!
//! ```text
//! lamina run examples/hello -- --greeting="Hello, unikernel" --times=3
//! ```
#![no_std]
#![no_main]

use lamina::prelude::*;

lamina::devices! {
    /// The devices hello uses, declared once: this list is what `main`
    /// receives, what `lamina describe` draws and what the image declares.
    pub struct Devices {
        console: Console,
    }
}

lamina::boot_args! {
    /// Hello
    pub struct Args {
        /// The greeting to print.
        pub greeting: String = "Hello from Lamina",
        /// How many times to print it, one a second.
        pub times: u32 = "3",
    }
}

/// Prints the greeting `times` times. Generic over the platform: the same
/// code runs as a Linux process and as a unikernel.
async fn hello<P: Platform>(env: Env<P>, devices: Devices<P>, args: Args) {
    let console = devices.console;
    let start = env.now();
    for i in 1..=args.times {
        console.write_line(&format!("{} ({i}/{})", args.greeting, args.times));
        if i < args.times {
            // Sleep until the next whole second since start, so the lines do
            // not drift by the time spent printing.
            env.runtime()
                .sleep_until(start + Duration::from_secs(i.into()))
                .await;
        }
    }
}

lamina::main!(hello);
