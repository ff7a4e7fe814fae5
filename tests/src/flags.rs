//! The benchmark programs' flags, parsed by clap. A flag error is the operator's, not a bug: it
//! names the flag and its value, is printed with the usage, and exits with code 2 without a
//! backtrace (an error returned through `main`, anyhow prints one under `RUST_BACKTRACE=1`).

use anyhow::{Result, anyhow};
use clap::error::ErrorKind;

/// `args` (the program's name already skipped) parsed into `A`; `None` for `--help`; or what
/// is wrong, in clap's words without its usage lines (`unexpected argument '--x' found`).
pub fn parse<A: clap::Parser>(args: impl IntoIterator<Item = String>) -> Result<Option<A>> {
    let program = A::command().get_name().to_string();
    match A::try_parse_from(std::iter::once(program).chain(args)) {
        Ok(a) => Ok(Some(a)),
        Err(e) if e.kind() == ErrorKind::DisplayHelp => Ok(None),
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(anyhow!(
                "{}",
                first.strip_prefix("error: ").unwrap_or(first)
            ))
        }
    }
}

/// What a program's flag parser found: the arguments; or, for `--help` (`None`), the help on
/// stdout and exit code 0; or the error and the usage on stderr and exit code 2.
pub fn or_exit<A: clap::CommandFactory, T>(parsed: Result<Option<T>>) -> T {
    let mut command = A::command();
    match parsed {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", command.render_help());
            std::process::exit(0)
        }
        Err(e) => {
            let name = command.get_name().to_string();
            eprintln!("{name}: {e:#}\n{}", command.render_usage());
            std::process::exit(2)
        }
    }
}
