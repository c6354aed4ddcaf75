//! How an application's `main` result becomes the exit status.

use alloc::format;

/// An exit status: 0 for success, anything else for failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl Exit {
    /// Status 0.
    pub const SUCCESS: Exit = Exit(0);
    /// Status 1.
    pub const FAILURE: Exit = Exit(1);
}

/// What an application's `main` may return: `()`, an [`Exit`], or a
/// `Result` whose error is printed before exiting with status 1.
pub trait IntoExit {
    /// The status, writing any error message through `report`.
    fn into_exit(self, report: &dyn Fn(&str)) -> Exit;
}

impl IntoExit for () {
    fn into_exit(self, _: &dyn Fn(&str)) -> Exit {
        Exit::SUCCESS
    }
}

impl IntoExit for Exit {
    fn into_exit(self, _: &dyn Fn(&str)) -> Exit {
        self
    }
}

impl<T: IntoExit, E: core::fmt::Display> IntoExit for Result<T, E> {
    fn into_exit(self, report: &dyn Fn(&str)) -> Exit {
        match self {
            Ok(v) => v.into_exit(report),
            Err(e) => {
                report(&format!("error: {e}"));
                Exit::FAILURE
            }
        }
    }
}
