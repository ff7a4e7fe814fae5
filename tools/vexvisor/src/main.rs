//! The `vexvisor` command: `init`, `run`, `status`.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use vexvisor::Home;
use vexvisor::fetch::FetchOptions;
use vexvisor::home::install_binary;
use vexvisor::supervisor::{RunConfig, run};
use vexvisor::verify::{SignatureFlags, check_executable, sha256_file, version_of};

#[derive(Parser)]
#[command(
    name = "vexvisor",
    version,
    about = "Runs vexidus-node and carries its binary upgrades"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sets up `<home>/vexvisor/` with FILE as the current binary.
    Init {
        /// The home directory (the node's data goes in `<home>/data`).
        #[arg(long, env = "VEXVISOR_HOME")]
        home: PathBuf,
        /// The node binary to start with.
        #[arg(long)]
        binary: PathBuf,
        /// Replace a different current binary (it is backed up first).
        #[arg(long)]
        force: bool,
    },
    /// Runs the node, carries upgrades, restarts and rolls back. Node arguments follow `--`.
    Run {
        /// The home directory.
        #[arg(long, env = "VEXVISOR_HOME")]
        home: PathBuf,
        #[command(flatten)]
        signatures: SignatureFlags,
        /// A new binary failing within this many seconds of its start is rolled back.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        rollback_window: u64,
        /// Largest binary accepted from a download.
        #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
        max_download_bytes: u64,
        /// Time limit of one download attempt.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        download_timeout: u64,
        /// Download attempts for transient failures.
        #[arg(long, default_value_t = 3)]
        download_attempts: u32,
        /// Give up after this many failures.
        #[arg(long, default_value_t = 10)]
        max_failures: u32,
        /// A node run this long clears the failure count.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        healthy_after: u64,
        /// Clear the failure count first (after the breaker tripped and the cause is fixed).
        #[arg(long)]
        reset_failures: bool,
        /// Backoff unit in milliseconds (waits are 2, 4, 8, 16, 32 units); for tests.
        #[arg(long, default_value_t = 1000, hide = true)]
        backoff_unit_ms: u64,
        /// Arguments for vexidus-node.
        #[arg(last = true)]
        node_args: Vec<OsString>,
    },
    /// Shows the current binary, staged upgrades, backups and the last failure.
    Status {
        /// The home directory.
        #[arg(long, env = "VEXVISOR_HOME")]
        home: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("vexvisor: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn execute(cli: Cli) -> Result<i32> {
    match cli.command {
        Cmd::Init {
            home,
            binary,
            force,
        } => init(&Home::new(home), &binary, force).map(|()| 0),
        Cmd::Run {
            home,
            signatures,
            rollback_window,
            max_download_bytes,
            download_timeout,
            download_attempts,
            max_failures,
            healthy_after,
            reset_failures,
            backoff_unit_ms,
            node_args,
        } => {
            let policy = signatures.policy()?;
            if max_failures == 0 {
                bail!("--max-failures must be at least 1");
            }
            run(RunConfig {
                home: Home::new(home),
                node_args,
                policy,
                fetch: FetchOptions {
                    max_bytes: max_download_bytes,
                    timeout: Duration::from_secs(download_timeout),
                    attempts: download_attempts.max(1),
                    ..FetchOptions::default()
                },
                rollback_window: Duration::from_secs(rollback_window),
                backoff_unit: Duration::from_millis(backoff_unit_ms),
                max_failures,
                healthy_after: Duration::from_secs(healthy_after),
                reset_failures,
            })
        }
        Cmd::Status { home, json } => {
            let v = vexvisor::status::status(&Home::new(home))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", vexvisor::status::render(&v));
            }
            Ok(0)
        }
    }
}

fn init(home: &Home, binary: &std::path::Path, force: bool) -> Result<()> {
    check_executable(binary)?;
    let version = version_of(binary)?;
    home.create_dirs()?;
    let current = home.current();
    let digest = sha256_file(binary)?;
    if current.exists() {
        if sha256_file(&current)? == digest {
            println!("{} already holds this binary", current.display());
            return Ok(());
        }
        if !force {
            bail!(
                "{} already holds another binary; pass --force to replace it (it is backed up)",
                current.display()
            );
        }
        home.back_up_current("init")?;
    }
    install_binary(binary, &current, &digest)
        .with_context(|| format!("cannot install {}", binary.display()))?;
    println!(
        "{} set up: {} ({}), sha256 {}",
        home.dir().display(),
        current.display(),
        version.lines().next().unwrap_or(""),
        hex::encode(digest)
    );
    Ok(())
}
