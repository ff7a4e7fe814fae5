//! The benchmark programs' flags: `--flag value` pairs and `--help`. A flag error is the
//! operator's, not a bug: it names the flag and its value, is printed with the usage, and exits
//! with code 2 without a backtrace (an error returned through `main`, anyhow prints one under
//! `RUST_BACKTRACE=1`).

use anyhow::{Context, Result, anyhow};
use std::fmt::Display;
use std::str::FromStr;

/// The flags after a program's name, taken one at a time.
pub struct Flags<I>(I);

impl<I: Iterator<Item = String>> Flags<I> {
    /// Over `args` (the program's name already skipped).
    pub fn new(args: impl IntoIterator<Item = String, IntoIter = I>) -> Self {
        Self(args.into_iter())
    }

    /// The next flag, or `None` when there are no more.
    pub fn next_flag(&mut self) -> Option<String> {
        self.0.next()
    }

    /// The value that follows `flag`, parsed, or what is wrong with it.
    pub fn value<T: FromStr>(&mut self, flag: &str) -> Result<T>
    where
        T::Err: Display,
    {
        let value = self
            .0
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        value.parse().map_err(|e| anyhow!("{flag} {value}: {e}"))
    }
}

/// What a program's flag parser found: the arguments; or, for `--help` (`None`), the usage on
/// stdout and exit code 0; or the error and the usage on stderr and exit code 2.
pub fn or_exit<A>(program: &str, usage: &str, parsed: Result<Option<A>>) -> A {
    match parsed {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{usage}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{program}: {e:#}\n{usage}");
            std::process::exit(2)
        }
    }
}
