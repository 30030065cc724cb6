//! The `runnel` binary: `runnel serve` runs a broker; the other subcommands
//! are the client CLI (crate `runnel-cli`). Kept thin on purpose.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use runnel_broker::BrokerConfig;

#[global_allocator]
static ALLOCATOR: runnel_broker::alloc_guard::GuardedAllocator = runnel_broker::alloc_guard::GuardedAllocator;

/// Ids of the client commands' global options (`runnel_cli::ClientArgs`);
/// `serve` neither shows nor accepts them.
const CLIENT_ARG_IDS: &[&str] = &["brokers", "client_config"];

#[derive(Parser, Debug)]
#[command(
    name = "runnel",
    version,
    about = "A Kafka-compatible event-streaming broker and its CLI",
    after_help = "RUNNEL_LOG sets the log filter (e.g. RUNNEL_LOG=debug, RUNNEL_LOG=runnel_broker=debug)."
)]
struct Cli {
    #[command(flatten)]
    client: runnel_cli::ClientArgs,
    /// Log format on stderr: text (coloured only on a terminal) or json (one object per line).
    #[arg(long, value_enum, global = true, env = "RUNNEL_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker (Kafka protocol) on this machine.
    #[command(after_help = "Precedence: --listen/--advertised-listener/--data-dir (and their RUNNEL_* variables) > --set > --config FILE > defaults.\n\
                            Every broker config key with its default: docs/configuration.md (or --print-config-reference).")]
    Serve(ServeArgs),
    #[command(flatten)]
    Client(runnel_cli::ClientCommand),
}

/// The explicit flags are `Option`s without clap defaults, so a flag given
/// can win over `--set` and `--config` while an absent one changes nothing;
/// the defaults are `BrokerConfig`'s.
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Where to listen for Kafka clients: HOST:PORT or Kafka's listeners form, e.g. PLAINTEXT://:9092
    /// [default: 127.0.0.1:9092, or `listeners` from --set/--config]
    #[arg(long, env = "RUNNEL_LISTEN", value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Directory for logs and metadata [default: runnel-data, or `log.dirs` from --set/--config]
    #[arg(long, env = "RUNNEL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HOST:PORT clients are told to connect to [default: the listen address; this machine's
    /// hostname if that is 0.0.0.0]
    #[arg(long, env = "RUNNEL_ADVERTISED_LISTENER", value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// A server.properties-style file of Kafka broker configs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A Kafka broker config, e.g. --set num.partitions=3 (repeatable; wins over --config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the reference of every broker and topic config (Markdown) and exit.
    #[arg(long)]
    print_config_reference: bool,
}

/// The command line, with the client options kept out of `serve`: they are
/// global so that both `runnel --brokers X topic list` and `runnel topic
/// list --brokers X` work, and clap would otherwise list them under serve.
/// serve gets hidden copies of them first: clap does not propagate a global
/// argument into a subcommand that already has one with its id.
fn command_line() -> clap::Command {
    let command = Cli::command();
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| CLIENT_ARG_IDS.contains(&arg.get_id().as_str()))
        .map(|arg| arg.clone().hide(true))
        .collect();
    command.mut_subcommand("serve", |serve| serve.args(hidden))
}

fn parse_command_line() -> Result<Cli, clap::Error> {
    let mut command = command_line();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    if let Some(serve) = matches.subcommand_matches("serve") {
        for id in CLIENT_ARG_IDS {
            if serve.value_source(id) == Some(ValueSource::CommandLine) {
                let flag = if *id == "brokers" { "--brokers" } else { "--client-config" };
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("{flag} is an option of the client commands; `runnel serve` does not take it"),
                ));
            }
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNNEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colour codes only for a person at a terminal, never into a log file.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Builds the broker config. Precedence, highest first: the explicit flags,
/// `--set`, the `--config` file, `BrokerConfig`'s defaults.
fn broker_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        config.load_properties(path)?;
    }
    for pair in &args.set {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set {pair:?}: expected KEY=VALUE"))?;
        config.set(key.trim(), value.trim())?;
    }
    if let Some(listen) = &args.listen {
        config.set("listeners", listen).map_err(|e| anyhow::anyhow!("--listen: {e}"))?;
    }
    if let Some(advertised) = &args.advertised_listener {
        config.set("advertised.listeners", advertised).map_err(|e| anyhow::anyhow!("--advertised-listener: {e}"))?;
    }
    if let Some(dir) = &args.data_dir {
        config.set_data_dir(dir.clone());
    }
    Ok(config)
}

async fn serve(args: ServeArgs, log_format: LogFormat) -> anyhow::Result<()> {
    let config = broker_config(&args)?;
    let running = runnel_broker::start(config).await?;
    // JSON logs stay all JSON; the "listening" log line says the same.
    if log_format == LogFormat::Text {
        eprintln!("runnel: serving Kafka clients on {}", running.local_addr);
    }
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

/// An error and its causes on one line, each message once: errors that put
/// their source in their own message (`cannot listen on X: {source}`) would
/// otherwise print the OS error twice.
fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if report.contains(&message) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&message);
    }
    report
}

fn main() -> ExitCode {
    let cli = match parse_command_line() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Serve(args) = &cli.command {
        if args.print_config_reference {
            print!("{}", runnel_broker::config::reference_markdown());
            return ExitCode::SUCCESS;
        }
        init_tracing(cli.log_format, "info");
    } else {
        // The client commands print their results; their logs are warnings and errors.
        init_tracing(cli.log_format, "warn");
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
            Command::Serve(args) => serve(args, cli.log_format).await,
            Command::Client(cmd) => runnel_cli::run(&cli.client, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel: error: {}", error_report(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_is_reported_once() {
        let io = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
        let start = runnel_broker::StartError::Listen { addr: "127.0.0.1:9092".into(), source: io };
        let report = error_report(&anyhow::Error::new(start));
        assert_eq!(report.matches("os error 98").count(), 1, "{report}");
        assert!(report.starts_with("cannot listen on 127.0.0.1:9092: "), "{report}");
        let chained = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(error_report(&chained), "outer: inner cause");
    }

    #[test]
    fn serve_help_has_no_client_options_and_client_options_go_anywhere() {
        let mut command = command_line();
        command.build(); // propagates the global options, as parsing does
        let serve = command.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        assert!(help.contains("--listen") && help.contains("--log-format"), "{help}");
        assert!(!help.contains("--brokers") && !help.contains("--client-config"), "{help}");
        for argv in [
            &["runnel", "--brokers", "h:1", "topic", "list"][..],
            &["runnel", "topic", "list", "--brokers", "h:1"][..],
            &["runnel", "topic", "--brokers", "h:1", "list"][..],
        ] {
            let matches = command_line().try_get_matches_from(argv).unwrap();
            let cli = Cli::from_arg_matches(&matches).unwrap();
            assert_eq!(cli.client.brokers, "h:1", "{argv:?}");
        }
    }
}
