//! `runnel user scram`: SCRAM credentials (KIP-554's DescribeUserScramCredentials
//! and AlterUserScramCredentials), as Kafka's `kafka-configs --entity-type users`
//! manages them. The salted password is computed here, as Kafka's clients do:
//! the password itself never leaves this process.

use std::io::Read;

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};
use kafka_protocol::protocol::StrBytes;
use ring::rand::SecureRandom;

use crate::wire::{self, Connection};
use crate::ClientArgs;

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// SCRAM-SHA-256 / SCRAM-SHA-512 credentials.
    #[command(subcommand)]
    Scram(ScramCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum ScramCommand {
    /// Create or replace a user's credential for one mechanism.
    Set {
        /// The user name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations (Kafka accepts 4096..=16384).
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
        /// The password (visible in the process list: prefer --password-stdin).
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from stdin (one line; a trailing newline is dropped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user's credential for one mechanism.
    Delete {
        /// The user name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
    },
    /// List users with their mechanisms and iterations (all users, or those named).
    List {
        /// Only these users (default: every user with a credential).
        users: Vec<String>,
    },
}

fn mechanism_code(name: &str) -> Result<(i8, &'static ring::pbkdf2::Algorithm)> {
    match name.to_ascii_uppercase().as_str() {
        "SCRAM-SHA-256" => Ok((1, &ring::pbkdf2::PBKDF2_HMAC_SHA256)),
        "SCRAM-SHA-512" => Ok((2, &ring::pbkdf2::PBKDF2_HMAC_SHA512)),
        other => bail!("unknown SCRAM mechanism {other:?} (SCRAM-SHA-256 or SCRAM-SHA-512)"),
    }
}

fn mechanism_name(code: i8) -> String {
    match code {
        1 => "SCRAM-SHA-256".into(),
        2 => "SCRAM-SHA-512".into(),
        other => format!("unknown({other})"),
    }
}

/// RFC 5802's SaltedPassword: Hi(password, salt, i), the output as long as the hash.
fn salted_password(algorithm: &'static ring::pbkdf2::Algorithm, mechanism: i8, password: &str, salt: &[u8], iterations: i32) -> Result<Vec<u8>> {
    let rounds = std::num::NonZeroU32::new(u32::try_from(iterations).unwrap_or(0)).context("iterations must be positive")?;
    let mut out = vec![0u8; if mechanism == 1 { 32 } else { 64 }];
    ring::pbkdf2::derive(*algorithm, rounds, salt, password.as_bytes(), &mut out);
    Ok(out)
}

pub async fn run(args: &ClientArgs, cmd: UserCommand) -> Result<()> {
    let UserCommand::Scram(cmd) = cmd;
    match cmd {
        ScramCommand::Set { user, mechanism, iterations, password, password_stdin } => {
            let (code, algorithm) = mechanism_code(&mechanism)?;
            let password = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin().read_to_string(&mut line).context("reading the password from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
                (None, false) => bail!("give the password with --password-stdin (or --password)"),
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            let mut salt = vec![0u8; 32];
            ring::rand::SystemRandom::new().fill(&mut salt).map_err(|_| anyhow::anyhow!("no random salt from the system"))?;
            let upsertion = ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(user.clone()))
                .with_mechanism(code)
                .with_iterations(iterations)
                .with_salted_password(salted_password(algorithm, code, &password, &salt, iterations.max(1))?.into())
                .with_salt(salt.into());
            alter(args, AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]), &user).await?;
            println!("set {} credential of user {user:?} ({iterations} iterations)", mechanism_name(code));
            Ok(())
        }
        ScramCommand::Delete { user, mechanism } => {
            let (code, _) = mechanism_code(&mechanism)?;
            let deletion = ScramCredentialDeletion::default().with_name(StrBytes::from_string(user.clone())).with_mechanism(code);
            alter(args, AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]), &user).await?;
            println!("deleted {} credential of user {user:?}", mechanism_name(code));
            Ok(())
        }
        ScramCommand::List { users } => {
            // Null users: every user with a credential (Kafka's "describe all").
            let request = DescribeUserScramCredentialsRequest::default().with_users(if users.is_empty() {
                None
            } else {
                Some(users.iter().map(|u| UserName::default().with_name(StrBytes::from_string(u.clone()))).collect())
            });
            let mut connection = Connection::open(&args.brokers).await?;
            let (response, _) = connection.send(&request).await.context("describing SCRAM credentials")?;
            if let Some(e) = wire::error_of(response.error_code, response.error_message.as_ref()) {
                bail!("describing SCRAM credentials: {e}");
            }
            let mut failed = false;
            println!("user\tmechanism\titerations");
            for result in &response.results {
                if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
                    eprintln!("error: user {:?}: {e}", result.user.as_str());
                    failed = true;
                    continue;
                }
                for info in &result.credential_infos {
                    println!("{}\t{}\t{}", result.user.as_str(), mechanism_name(info.mechanism), info.iterations);
                }
            }
            if failed {
                bail!("some users could not be described");
            }
            Ok(())
        }
    }
}

async fn alter(args: &ClientArgs, request: AlterUserScramCredentialsRequest, user: &str) -> Result<()> {
    let mut connection = Connection::open(&args.brokers).await?;
    let (response, _) = connection.send(&request).await.context("altering SCRAM credentials")?;
    for result in &response.results {
        if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
            bail!("user {:?}: {e}", result.user.as_str());
        }
    }
    if response.results.is_empty() {
        bail!("user {user:?}: the broker answered nothing");
    }
    Ok(())
}
