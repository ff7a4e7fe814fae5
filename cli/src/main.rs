//! `vexidus`: the operator and client command line. `main` maps errors to exit codes; every
//! command takes `--rpc URL` and `--output text|json`.

#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vexidus_cli::{RpcClient, format_vxs, parse_vxs};
use vexidus_rpc_api::{BlockId, H256, PlanTarget, RawTransaction, TransactionStatus, VexApiClient};
use vexidus_runtime_api::signing::{Keypair, dev_seed};
use vexidus_runtime_api::transaction::{Operation, Transaction};
use vexidus_runtime_api::{Address, PublicKey};

mod supervisor_cmds;

#[derive(Parser)]
#[command(name = "vexidus", version, about = "Vexidus operator and client CLI")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// The node's JSON-RPC endpoint.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9933",
        env = "VEXIDUS_RPC"
    )]
    rpc: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Key files.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Send transactions.
    #[command(subcommand)]
    Tx(TxCmd),
    /// Read chain state.
    #[command(subcommand)]
    Query(QueryCmd),
    /// Inspect runtime blobs.
    #[command(subcommand)]
    Runtime(RuntimeCmd),
    /// Genesis files for new chains.
    #[command(subcommand)]
    Genesis(GenesisCmd),
    /// Parameter governance: proposals and their votes.
    #[command(subcommand)]
    Proposal(ProposalCmd),
    /// Upgrade governance: schedule, vote, cancel, inspect, sign.
    #[command(subcommand)]
    Upgrade(UpgradeCmd),
    /// Start a network of validators on loopback (keys, genesis, one process per node);
    /// Ctrl-C stops them all.
    Localnet(vexidus_cli::localnet::LocalnetArgs),
}

#[derive(Subcommand)]
enum GenesisCmd {
    /// Writes a genesis file for `vexidus-node --genesis FILE`.
    New(GenesisArgs),
}

#[derive(Args)]
struct GenesisArgs {
    /// Where to write the JSON.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
    /// Chain id.
    #[arg(long, default_value = "vexidus-local")]
    chain_id: String,
    /// A genesis validator: PUBKEY or PUBKEY:STAKE_VXS (stake defaults to 100000). Repeatable.
    #[arg(long = "validator", required = true)]
    validators: Vec<String>,
    /// A funded account: ADDRESS:AMOUNT_VXS. Repeatable.
    #[arg(long = "balance")]
    balances: Vec<String>,
    /// `seed-authority` (plans approved when scheduled) or `full` (validators vote).
    #[arg(long, default_value = "seed-authority")]
    governance_mode: String,
    /// The upgrade authority's public key (default: the first validator).
    #[arg(long)]
    upgrade_authority: Option<String>,
    /// Voting period of upgrade plans and proposals, in blocks.
    #[arg(long)]
    voting_period: Option<u64>,
    /// Quorum in percent.
    #[arg(long)]
    upgrade_quorum: Option<u8>,
    /// Least lead of an upgrade's target height, in blocks.
    #[arg(long)]
    upgrade_min_lead: Option<u64>,
    /// Grace period after an upgrade, in blocks.
    #[arg(long)]
    upgrade_grace: Option<u64>,
    /// Block time in seconds (fractions allowed).
    #[arg(long, default_value_t = 1.0)]
    block_time: f64,
    /// Failover unit in milliseconds: the backups of a slot may produce 5, 8, 11 … units after
    /// the block interval (SPEC §10: 1000).
    #[arg(long, default_value_t = vexidus_runtime_api::genesis_file::DEFAULT_FAILOVER_BASE_MS)]
    failover_base_ms: u64,
    /// Start the chain on an earlier runtime release (its spec_version; nodes carry every
    /// release) instead of the one the node is built with.
    #[arg(long)]
    runtime_spec_version: Option<u32>,
}

#[derive(Subcommand)]
enum ProposalCmd {
    /// Opens a proposal (accounts with stake).
    Create {
        #[command(flatten)]
        send: SendOpts,
        /// Change a parameter: its name (gas_price, max_txs_per_block, min_stake, …).
        #[arg(long, requires = "value", conflicts_with_all = ["spend_to", "title"])]
        param: Option<String>,
        /// The parameter's new value (integer; min_stake in nanoVXS).
        #[arg(long)]
        value: Option<u128>,
        /// Pay from the treasury to this address.
        #[arg(long, requires = "amount", conflicts_with = "title")]
        spend_to: Option<String>,
        /// Amount of a treasury spend, in VXS.
        #[arg(long)]
        amount: Option<String>,
        /// A text proposal's title.
        #[arg(long)]
        title: Option<String>,
        /// A text proposal's body.
        #[arg(long, default_value = "")]
        body: String,
    },
    /// Votes on a proposal (active validators).
    Vote {
        #[command(flatten)]
        send: SendOpts,
        /// Proposal id.
        #[arg(long)]
        id: u64,
        /// Approve.
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        /// Reject.
        #[arg(long)]
        reject: bool,
    },
    /// Executes a passed proposal (anyone).
    Execute {
        #[command(flatten)]
        send: SendOpts,
        /// Proposal id.
        #[arg(long)]
        id: u64,
    },
    /// Withdraws a proposal (its proposer).
    Cancel {
        #[command(flatten)]
        send: SendOpts,
        /// Proposal id.
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand)]
enum UpgradeCmd {
    /// Schedules a binary upgrade (upgrade authority only).
    Schedule {
        #[command(flatten)]
        send: SendOpts,
        /// The upgrade authority's public key (must match --key).
        #[arg(long)]
        from: String,
        /// Plan name: [a-z0-9._-], at most 64 bytes, not starting with '.'.
        #[arg(long)]
        name: String,
        /// Target height.
        #[arg(long)]
        height: u64,
        /// Where validators' supervisors download the binary (http, https, file).
        #[arg(long)]
        binary_url: String,
        /// SHA-256 of the binary, 64 hex characters.
        #[arg(long)]
        checksum: String,
        /// Ed25519 signature by the authority over the digest (`vexidus upgrade sign`).
        #[arg(long)]
        signature: Option<String>,
        /// Release notes.
        #[arg(long, default_value = "")]
        info_url: String,
    },
    /// Schedules a runtime upgrade with a WebAssembly blob (upgrade authority only).
    Runtime {
        #[command(flatten)]
        send: SendOpts,
        /// Plan name.
        #[arg(long)]
        name: String,
        /// Target height: the blob runs from the block after it.
        #[arg(long)]
        height: u64,
        /// The runtime blob.
        #[arg(long)]
        wasm: PathBuf,
        /// Release notes.
        #[arg(long, default_value = "")]
        info_url: String,
    },
    /// Votes on the active plan (active validators, full mode).
    Vote {
        #[command(flatten)]
        send: SendOpts,
        /// Plan name.
        #[arg(long)]
        name: String,
        /// Approve.
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        /// Reject.
        #[arg(long)]
        reject: bool,
    },
    /// Cancels the active plan (upgrade authority only).
    Cancel {
        #[command(flatten)]
        send: SendOpts,
        /// Plan name.
        #[arg(long)]
        name: String,
    },
    /// Shows the active plan with its tally.
    Plan,
    /// Downloads and verifies the active plan's binary into `<home>/vexvisor/upgrades/<name>/`
    /// ahead of the height, so the supervisor swaps without downloading.
    Prepare {
        /// The vexvisor home directory.
        #[arg(long, env = "VEXVISOR_HOME")]
        home: PathBuf,
        #[command(flatten)]
        signatures: vexvisor::verify::SignatureFlags,
    },
    /// Lists the supervisor's backups newest first and swaps the chosen one into `current/`.
    Rollback {
        /// The vexvisor home directory.
        #[arg(long, env = "VEXVISOR_HOME")]
        home: PathBuf,
        /// Do not ask for confirmation (needs --pick).
        #[arg(long)]
        yes: bool,
        /// Which backup, 1 = newest.
        #[arg(long, value_name = "N")]
        pick: Option<usize>,
    },
    /// Signs a binary's SHA-256 digest with the authority key, for `schedule --signature`.
    Sign {
        /// The binary.
        #[arg(long)]
        binary: PathBuf,
        /// The authority's key file.
        #[arg(long)]
        key: PathBuf,
        /// Chain id (default: ask the node).
        #[arg(long)]
        chain_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Creates a new random key file (mode 0600).
    Generate {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Prints a key file's public key and address.
    Show {
        /// The key file.
        file: PathBuf,
    },
    /// Writes the well-known development key (validator, authority and funded on `--dev`).
    Dev {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct SendOpts {
    /// Key file of the sender.
    #[arg(long)]
    key: PathBuf,
    /// Gas limit; defaults to exactly what the operations need.
    #[arg(long)]
    max_gas: Option<u64>,
    /// Blocks from now the transaction stays valid.
    #[arg(long, default_value_t = 100)]
    valid_for: u64,
    /// Submit and print the hash without waiting for inclusion.
    #[arg(long)]
    no_wait: bool,
    /// Seconds to wait for inclusion.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(Subcommand)]
enum TxCmd {
    /// Sends VXS.
    Transfer {
        #[command(flatten)]
        send: SendOpts,
        /// Recipient address.
        #[arg(long)]
        to: String,
        /// Amount in VXS (up to 9 decimals).
        #[arg(long)]
        amount: String,
    },
    /// Registers the sender as a validator.
    RegisterValidator {
        #[command(flatten)]
        send: SendOpts,
        /// Self-stake in VXS.
        #[arg(long)]
        stake: String,
        /// Commission in basis points.
        #[arg(long, default_value_t = 500)]
        commission_bps: u16,
    },
    /// Leaves jail once the term has passed (the sender must be the jailed validator).
    Unjail {
        #[command(flatten)]
        send: SendOpts,
    },
}

#[derive(Subcommand)]
enum QueryCmd {
    /// Chain status: height, head, runtime.
    Status,
    /// A block by height, hash or `latest`.
    Block {
        /// Height, `0x` hash or `latest`.
        #[arg(default_value = "latest")]
        id: String,
    },
    /// An account's balance and nonce.
    Account {
        /// Address.
        address: String,
    },
    /// Every validator.
    Validators,
    /// One validator.
    Validator {
        /// Address.
        address: String,
    },
    /// Protocol parameters in force.
    Params,
    /// A governance proposal with its tally.
    Proposal {
        /// Proposal id.
        id: u64,
    },
    /// A transaction by hash.
    Transaction {
        /// Hash.
        hash: String,
    },
}

#[derive(Subcommand)]
enum RuntimeCmd {
    /// Prints the blake3 hash of a runtime blob (what governance votes on).
    Hash {
        /// The blob.
        file: PathBuf,
    },
    /// Prints the version embedded in a runtime blob.
    Version {
        /// The blob.
        file: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let g = cli.global;
    let client = RpcClient::new(&g.rpc);
    match cli.command {
        Command::Keys(k) => keys(k, g.output),
        Command::Tx(t) => tx(t, &client, g.output),
        Command::Query(q) => query(q, &client, g.output),
        Command::Runtime(r) => runtime(r, g.output),
        Command::Upgrade(u) => upgrade(u, &client, g.output),
        Command::Proposal(p) => proposal(p, &client, g.output),
        Command::Genesis(GenesisCmd::New(args)) => genesis_new(args, g.output),
        Command::Localnet(args) => vexidus_cli::localnet::run(args),
    }
}

fn print(output: Output, value: &Value, text: impl FnOnce() -> String) {
    match output {
        Output::Json => println!("{value}"),
        Output::Text => println!("{}", text()),
    }
}

fn write_key(path: &Path, key: &Keypair, force: bool) -> Result<()> {
    use vexidus_runtime_api::key_file::{self, KeyFileError};
    key_file::write(path, key, force).map_err(|e| match e {
        KeyFileError::Exists { .. } => anyhow::anyhow!("{e} (pass --force to overwrite)"),
        e => e.into(),
    })
}

/// The gas a transaction needs on the chain's runtime or the one before it. Runtimes before
/// spec_version 2 charge 16 gas per byte of runtime code instead of per transaction byte, a
/// little more for an upgrade, and the upgrade to spec_version 2 is sent to such a runtime; gas
/// not used is refunded, so asking for the larger costs nothing.
fn default_max_gas(tx: &Transaction) -> u64 {
    use vexidus_runtime_api::transaction::UpgradeTarget;
    let code: u64 = tx
        .operations
        .iter()
        .map(|op| match op {
            Operation::ScheduleUpgrade {
                target: UpgradeTarget::Runtime { code },
                ..
            } => code.len() as u64,
            _ => 0,
        })
        .sum();
    tx.intrinsic_gas()
        .max(tx.operations_gas().saturating_add(16 * code))
}

fn read_key(path: &Path) -> Result<Keypair> {
    Ok(vexidus_runtime_api::key_file::read(path)?)
}

fn key_json(key: &Keypair) -> Value {
    json!({ "public_key": key.public().to_string(), "address": key.public().address().to_string() })
}

fn keys(cmd: KeysCmd, output: Output) -> Result<()> {
    let (key, out) = match cmd {
        KeysCmd::Generate { out, force } => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
            let key = Keypair::from_seed(seed);
            write_key(&out, &key, force)?;
            (key, Some(out))
        }
        KeysCmd::Dev { out, force } => {
            let key = Keypair::from_seed(dev_seed());
            write_key(&out, &key, force)?;
            (key, Some(out))
        }
        KeysCmd::Show { file } => (read_key(&file)?, None),
    };
    let v = key_json(&key);
    print(output, &v, || {
        let mut s = format!(
            "public key: {}\naddress:    {}",
            key.public(),
            key.public().address()
        );
        if let Some(out) = out {
            s.push_str(&format!("\nwritten to: {}", out.display()));
        }
        s
    });
    Ok(())
}

fn parse_address(s: &str) -> Result<Address> {
    Address::from_hex(s).map_err(|e| anyhow::anyhow!("{s:?} is not an address: {e}"))
}

/// Which write method a transaction goes through: the general one, or a typed one that
/// refuses any other operation.
#[derive(Clone, Copy)]
enum Write {
    Submit,
    ScheduleUpgrade,
    CancelUpgrade,
    VoteUpgrade,
}

fn send(
    client: &RpcClient,
    opts: &SendOpts,
    operations: Vec<Operation>,
    output: Output,
) -> Result<()> {
    send_via(client, Write::Submit, opts, operations, output)
}

fn send_via(
    client: &RpcClient,
    method: Write,
    opts: &SendOpts,
    operations: Vec<Operation>,
    output: Output,
) -> Result<()> {
    let key = read_key(&opts.key)?;
    let api = client.api();
    let status = client.wait(api.status())?;
    let account = client.wait(api.account(key.public().address()))?;
    let tx = Transaction {
        chain_id: status.chain_id,
        sender: key.public(),
        nonce: account.nonce,
        max_gas: 0,
        valid_until: status.height + opts.valid_for,
        operations,
    };
    let max_gas = opts.max_gas.unwrap_or_else(|| default_max_gas(&tx));
    let signed = RawTransaction::of(&key.sign_transaction(Transaction { max_gas, ..tx }));
    let hash = match method {
        Write::Submit => client.wait(api.submit_transaction(signed)),
        Write::ScheduleUpgrade => client.wait(api.schedule_upgrade(signed)),
        Write::CancelUpgrade => client.wait(api.cancel_upgrade(signed)),
        Write::VoteUpgrade => client.wait(api.vote_upgrade(signed)),
    }?;
    if opts.no_wait {
        print(
            output,
            &json!({ "hash": hash, "status": "pending" }),
            || format!("submitted {hash}"),
        );
        return Ok(());
    }
    let included = client.wait_included_typed(hash, Duration::from_secs(opts.timeout))?;
    let TransactionStatus::Included {
        height,
        index,
        receipt,
        ..
    } = &included
    else {
        bail!("transaction {hash} is not included");
    };
    print(output, &to_json(&included), || {
        format!(
            "transaction {hash}\nincluded in block {height} (index {index})\nstatus:   {}\ngas used: {}\nfee:      {}{}",
            if receipt.success { "success" } else { "FAILED" },
            receipt.gas_used,
            format_vxs(receipt.fee),
            receipt
                .error
                .as_ref()
                .map(|e| format!("\nerror:    {e}"))
                .unwrap_or_default(),
        )
    });
    if !receipt.success {
        bail!(
            "transaction failed: {}",
            receipt.error.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// An answer as JSON for `--output json`.
fn to_json(v: &impl serde::Serialize) -> Value {
    // The answer types serialize to JSON without failing (no maps with non-string keys).
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn tx(cmd: TxCmd, client: &RpcClient, output: Output) -> Result<()> {
    match cmd {
        TxCmd::Transfer {
            send: opts,
            to,
            amount,
        } => {
            let to = parse_address(&to)?;
            let amount = parse_vxs(&amount).map_err(anyhow::Error::msg)?;
            send(
                client,
                &opts,
                vec![Operation::Transfer { to, amount }],
                output,
            )
        }
        TxCmd::RegisterValidator {
            send: opts,
            stake,
            commission_bps,
        } => {
            let stake = parse_vxs(&stake).map_err(anyhow::Error::msg)?;
            send(
                client,
                &opts,
                vec![Operation::RegisterValidator {
                    stake,
                    commission_bps,
                }],
                output,
            )
        }
        TxCmd::Unjail { send: opts } => send(client, &opts, vec![Operation::Unjail], output),
    }
}

fn query(cmd: QueryCmd, client: &RpcClient, output: Output) -> Result<()> {
    let api = client.api();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match cmd {
        QueryCmd::Status => {
            let s = client.wait(api.status())?;
            print(output, &to_json(&s), || {
                format!(
                    "chain:     {}\nheight:    {}\nfinalized: {}\nhead:      {}\nruntime:   {} v{} ({})\npending:   {}",
                    s.chain_id,
                    s.height,
                    s.finalized_height,
                    s.head_hash,
                    s.runtime.spec_name,
                    s.runtime.spec_version,
                    s.runtime.code_hash,
                    s.pending_transactions,
                )
            });
        }
        QueryCmd::Block { id } => {
            let which: BlockId = id.parse().map_err(anyhow::Error::msg)?;
            let Some(b) = client.wait(api.block(which, None))? else {
                bail!("no block {id}");
            };
            let v = to_json(&b);
            print(output, &v, || pretty(&v));
        }
        QueryCmd::Account { address } => {
            let a = parse_address(&address)?;
            let v = client.wait(api.account(a))?;
            print(output, &to_json(&v), || {
                format!(
                    "address: {}\nbalance: {} ({} nanoVXS)\nnonce:   {}",
                    v.address,
                    format_vxs(v.balance),
                    v.balance,
                    v.nonce
                )
            });
        }
        QueryCmd::Validators => {
            let vs = client.wait(api.validators())?;
            print(output, &to_json(&vs), || {
                vs.iter()
                    .map(|x| {
                        format!(
                            "{}  stake {}  commission {} bps  jailed until {}",
                            x.address,
                            format_vxs(x.total_stake),
                            x.commission_bps,
                            x.jailed_until
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        QueryCmd::Validator { address } => {
            let a = parse_address(&address)?;
            let Some(v) = client.wait(api.validator(a))? else {
                bail!("{a} is not a validator");
            };
            let v = to_json(&v);
            print(output, &v, || pretty(&v));
        }
        QueryCmd::Params => {
            let v = to_json(&client.wait(api.parameters())?);
            print(output, &v, || {
                v.as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| format!("{k:<24} {v}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        QueryCmd::Proposal { id } => {
            let Some(p) = client.wait(api.proposal(id))? else {
                bail!("no proposal {id}");
            };
            let v = to_json(&p);
            print(output, &v, || pretty(&v));
        }
        QueryCmd::Transaction { hash } => {
            let h = H256::parse(&hash).map_err(anyhow::Error::msg)?;
            let Some(t) = client.wait(api.transaction(h))? else {
                bail!("unknown transaction {hash}");
            };
            let v = to_json(&t);
            print(output, &v, || pretty(&v));
        }
    }
    Ok(())
}

fn runtime(cmd: RuntimeCmd, output: Output) -> Result<()> {
    let file = match &cmd {
        RuntimeCmd::Hash { file } | RuntimeCmd::Version { file } => file,
    };
    let code = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    match cmd {
        RuntimeCmd::Hash { .. } => {
            let hash = format!("0x{}", blake3::hash(&code).to_hex());
            print(output, &json!({ "hash": hash, "size": code.len() }), || {
                hash.clone()
            });
        }
        RuntimeCmd::Version { .. } => {
            let v = vexidus_cli::runtime_version(&code).map_err(anyhow::Error::msg)?;
            let j = json!({
                "spec_name": v.spec_name, "spec_version": v.spec_version,
                "impl_version": v.impl_version, "abi_version": v.abi_version,
            });
            print(output, &j, || {
                format!(
                    "{} spec_version {} impl_version {} abi_version {}",
                    v.spec_name, v.spec_version, v.impl_version, v.abi_version
                )
            });
        }
    }
    let _ = PublicKey::default();
    Ok(())
}

fn decode_hex(s: &str, what: &str) -> Result<Vec<u8>> {
    let t = s.trim();
    hex::decode(t.strip_prefix("0x").unwrap_or(t))
        .map_err(|e| anyhow::anyhow!("{what} is not hex: {e}"))
}

fn upgrade(cmd: UpgradeCmd, client: &RpcClient, output: Output) -> Result<()> {
    use vexidus_runtime_api::transaction::UpgradeTarget;
    match cmd {
        UpgradeCmd::Schedule {
            send,
            from,
            name,
            height,
            binary_url,
            checksum,
            signature,
            info_url,
        } => {
            let key = read_key(&send.key)?;
            let from_key = vexidus_runtime_api::PublicKey::from_hex(&from)
                .map_err(|e| anyhow::anyhow!("--from {from:?} is not a public key: {e}"))?;
            if from_key.0 == key.public().address().0 {
                bail!(
                    "--from takes the upgrade authority's public key, not its address: pass {} (the address is {})",
                    key.public(),
                    key.public().address()
                );
            }
            if from_key != key.public() {
                bail!(
                    "--from {from_key} is not the public key of {} ({})",
                    send.key.display(),
                    key.public()
                );
            }
            let target = UpgradeTarget::Binary {
                binary_url,
                sha256: decode_hex(&checksum, "--checksum")?,
                signature: signature
                    .map(|s| decode_hex(&s, "--signature"))
                    .transpose()?,
            };
            let op = Operation::ScheduleUpgrade {
                name,
                height,
                info_url,
                target,
            };
            send_via(client, Write::ScheduleUpgrade, &send, vec![op], output)
        }
        UpgradeCmd::Runtime {
            send,
            name,
            height,
            wasm,
            info_url,
        } => {
            let code =
                std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            let op = Operation::ScheduleUpgrade {
                name,
                height,
                info_url,
                target: UpgradeTarget::Runtime { code },
            };
            send_via(client, Write::ScheduleUpgrade, &send, vec![op], output)
        }
        UpgradeCmd::Vote {
            send,
            name,
            approve,
            reject,
        } => {
            let approve = approve && !reject;
            send_via(
                client,
                Write::VoteUpgrade,
                &send,
                vec![Operation::VoteUpgrade { name, approve }],
                output,
            )
        }
        UpgradeCmd::Cancel { send, name } => send_via(
            client,
            Write::CancelUpgrade,
            &send,
            vec![Operation::CancelUpgrade { name }],
            output,
        ),
        UpgradeCmd::Plan => {
            let plan = client.wait(client.api().upgrade_plan())?;
            print(output, &to_json(&plan), || {
                let Some(p) = &plan else {
                    return "no active upgrade plan".to_string();
                };
                let kind = match p.target {
                    PlanTarget::Binary { .. } => "binary",
                    PlanTarget::Runtime { .. } => "runtime",
                };
                format!(
                    "plan:      {} ({kind})\nstatus:    {}\nheight:    {}\nscheduled: {} (vote ends {})\ntally:     {} approve / {} reject of {} (quorum {}%)",
                    p.name,
                    p.status.as_str(),
                    p.height,
                    p.scheduled_at,
                    p.voting_ends_at,
                    p.tally.approve,
                    p.tally.reject,
                    p.tally.total,
                    p.tally.quorum_percent,
                )
            });
            Ok(())
        }
        UpgradeCmd::Prepare { home, signatures } => {
            let policy = signatures.policy()?;
            let v = supervisor_cmds::prepare(client, &home, policy)?;
            print(output, &to_json(&v), || {
                format!(
                    "staged upgrade {} (height {}) at {}\nsha256 {} verified{}",
                    v.name,
                    v.height,
                    v.path,
                    v.sha256,
                    if v.signed { ", signature verified" } else { "" }
                )
            });
            Ok(())
        }
        UpgradeCmd::Rollback { home, yes, pick } => {
            let v = supervisor_cmds::rollback(&home, yes, pick)?;
            print(output, &to_json(&v), || {
                format!("current/ now holds {}", v.restored)
            });
            Ok(())
        }
        UpgradeCmd::Sign {
            binary,
            key,
            chain_id,
        } => {
            use sha2::Digest;
            let key = read_key(&key)?;
            let bytes = std::fs::read(&binary)
                .with_context(|| format!("cannot read {}", binary.display()))?;
            let digest = sha2::Sha256::digest(&bytes);
            let chain_id = match chain_id {
                Some(c) => c,
                None => client.wait(client.api().status())?.chain_id,
            };
            let sig = key.sign(
                vexidus_runtime_api::signing::BINARY_DOMAIN,
                &chain_id,
                &digest,
            );
            let v = json!({
                "sha256": hex::encode(digest), "signature": hex::encode(sig.0),
                "public_key": key.public().to_string(), "chain_id": chain_id,
            });
            print(output, &v, || hex::encode(sig.0));
            Ok(())
        }
    }
}

fn proposal(cmd: ProposalCmd, client: &RpcClient, output: Output) -> Result<()> {
    use vexidus_runtime_api::transaction::{ParamKey, ProposalKind};
    match cmd {
        ProposalCmd::Create {
            send: opts,
            param,
            value,
            spend_to,
            amount,
            title,
            body,
        } => {
            let kind = match (param, spend_to, title) {
                (Some(name), None, None) => {
                    let key = ParamKey::ALL
                        .into_iter()
                        .find(|k| k.as_str() == name)
                        .ok_or_else(|| {
                            let names: Vec<&str> =
                                ParamKey::ALL.iter().map(|k| k.as_str()).collect();
                            anyhow::anyhow!(
                                "unknown parameter {name:?}; governable parameters: {}",
                                names.join(", ")
                            )
                        })?;
                    ProposalKind::ParameterChange {
                        key,
                        value: value.context("--param needs --value")?,
                    }
                }
                (None, Some(to), None) => ProposalKind::TreasurySpend {
                    to: parse_address(&to)?,
                    amount: parse_vxs(&amount.context("--spend-to needs --amount")?)
                        .map_err(anyhow::Error::msg)?,
                },
                (None, None, Some(title)) => ProposalKind::Text { title, body },
                _ => bail!(
                    "say what the proposal does: --param NAME --value V, --spend-to ADDR --amount VXS, or --title T"
                ),
            };
            send(
                client,
                &opts,
                vec![Operation::CreateProposal { kind }],
                output,
            )
        }
        ProposalCmd::Vote {
            send: opts,
            id,
            approve,
            reject,
        } => send(
            client,
            &opts,
            vec![Operation::VoteProposal {
                id,
                approve: approve && !reject,
            }],
            output,
        ),
        ProposalCmd::Execute { send: opts, id } => send(
            client,
            &opts,
            vec![Operation::ExecuteProposal { id }],
            output,
        ),
        ProposalCmd::Cancel { send: opts, id } => send(
            client,
            &opts,
            vec![Operation::CancelProposal { id }],
            output,
        ),
    }
}

fn genesis_new(a: GenesisArgs, output: Output) -> Result<()> {
    use vexidus_runtime_api::genesis_file::{BalanceEntry, GenesisFile, ValidatorEntry};
    let mut validators = Vec::new();
    for v in &a.validators {
        let (pk, stake) = v.split_once(':').unwrap_or((v.as_str(), "100000"));
        vexidus_runtime_api::PublicKey::from_hex(pk)
            .map_err(|e| anyhow::anyhow!("--validator {v:?}: public key: {e}"))?;
        let stake =
            parse_vxs(stake).map_err(|e| anyhow::anyhow!("--validator {v:?}: stake: {e}"))?;
        validators.push(ValidatorEntry {
            public_key: pk.to_string(),
            stake,
            commission_bps: 500,
        });
    }
    let mut balances = Vec::new();
    for b in &a.balances {
        let (addr, amount) = b
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--balance {b:?}: expected ADDRESS:AMOUNT_VXS"))?;
        parse_address(addr)?;
        balances.push(BalanceEntry {
            address: addr.to_string(),
            amount: parse_vxs(amount).map_err(anyhow::Error::msg)?,
        });
    }
    if !(a.block_time > 0.0 && a.block_time <= 3600.0) {
        bail!(
            "--block-time must be between 0 and 3600 seconds, got {}",
            a.block_time
        );
    }
    let mut parameters = vexidus_runtime_api::Parameters::default();
    if let Some(v) = a.voting_period {
        parameters.voting_period_blocks = v;
    }
    if let Some(v) = a.upgrade_quorum {
        parameters.quorum_percent = v;
    }
    if let Some(v) = a.upgrade_min_lead {
        parameters.upgrade_min_lead_blocks = v;
    }
    if let Some(v) = a.upgrade_grace {
        parameters.upgrade_grace_blocks = v;
    }
    let file = GenesisFile {
        chain_id: a.chain_id,
        block_time_ms: (a.block_time * 1000.0).round().max(1.0) as u64,
        balances,
        upgrade_authority: a
            .upgrade_authority
            .unwrap_or_else(|| validators[0].public_key.clone()),
        validators,
        governance_mode: a.governance_mode,
        parameters,
        failover_base_ms: a.failover_base_ms,
        runtime_spec_version: a.runtime_spec_version,
    };
    // The node's own checks, so a file this writes always starts a chain.
    let config = file
        .clone()
        .into_config()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let text = serde_json::to_string_pretty(&file)?;
    if a.out.exists() && !a.force {
        bail!(
            "{} already exists (pass --force to overwrite)",
            a.out.display()
        );
    }
    std::fs::write(&a.out, format!("{text}\n"))
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let v = json!({ "out": a.out.display().to_string(), "chain_id": config.chain_id, "validators": config.validators.len() });
    print(output, &v, || {
        format!(
            "wrote {} (chain {}, {} validators)",
            a.out.display(),
            config.chain_id,
            config.validators.len()
        )
    });
    Ok(())
}
