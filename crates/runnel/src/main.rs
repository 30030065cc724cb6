//! The `runnel` binary: `runnel serve` runs a broker; the other subcommands
//! are the client CLI (crate `runnel-cli`). Kept thin on purpose.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runnel_broker::BrokerConfig;

#[global_allocator]
static ALLOCATOR: runnel_broker::alloc_guard::GuardedAllocator = runnel_broker::alloc_guard::GuardedAllocator;

#[derive(Parser, Debug)]
#[command(name = "runnel", version, about = "A Kafka-compatible event-streaming broker and its CLI")]
struct Cli {
    #[command(flatten)]
    client: runnel_cli::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker (Kafka protocol) on this machine.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(runnel_cli::ClientCommand),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on for Kafka clients.
    #[arg(long, default_value = "127.0.0.1:9092", env = "RUNNEL_LISTEN")]
    listen: String,
    /// Directory for logs and metadata.
    #[arg(long, default_value = "runnel-data", env = "RUNNEL_DATA_DIR")]
    data_dir: PathBuf,
    /// HOST:PORT clients are told to connect to (default: the listen address).
    #[arg(long, env = "RUNNEL_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// A server.properties-style file of Kafka broker configs.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A Kafka broker config, e.g. --set num.partitions=3 (repeatable; wins over --config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNNEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn broker_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        config.load_properties(path)?;
    }
    config.set("listeners", &args.listen)?;
    config.data_dir = args.data_dir.clone();
    let advertised = args.advertised_listener.clone().unwrap_or_else(|| args.listen.clone());
    config.set("advertised.listeners", &advertised)?;
    for pair in &args.set {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set {pair:?}: expected KEY=VALUE"))?;
        config.set(key.trim(), value.trim())?;
    }
    Ok(config)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = broker_config(&args)?;
    let running = runnel_broker::start(config).await?;
    eprintln!("runnel: serving Kafka clients on {}", running.local_addr);
    wait_for_shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        init_tracing();
    } else {
        // A client command piped into `head` should stop quietly, as Unix tools do.
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runnel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Client(cmd) => runnel_cli::run(&cli.client, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
