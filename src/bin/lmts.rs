//! `lmts`: sign requests for, and talk to, the Limitless Exchange API.
//!
//! Exit status: 0 success; 1 the server answered with an error status; 2 a local error (bad
//! arguments, malformed credentials, a policy refusal) with nothing sent.

// The argument docs are the `--help` text, where a URL reads best bare.
#![allow(rustdoc::bare_urls)]

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::Method;
use http::uri::PathAndQuery;
use limitless_auth::client::{self, Client};
use limitless_auth::clock::SystemClock;
use limitless_auth::credentials::{ENV_TOKEN_ID, ENV_TOKEN_SECRET};
use limitless_auth::mock::{
    MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET, USER_IDENTITY,
};
use limitless_auth::types::Scope;
use limitless_auth::{Credentials, HmacCredentials, IdentityToken, Timestamp};
use secrecy::ExposeSecret as _;

/// Environment variable holding the API base URL.
const ENV_API_URL: &str = "LIMITLESS_API_URL";

#[derive(Parser)]
#[command(
    name = "lmts",
    version,
    about = "Sign requests for, and talk to, the Limitless Exchange API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the three HMAC headers for one request (credentials from LMTS_TOKEN_ID and
    /// LMTS_TOKEN_SECRET).
    Sign(SignArgs),
    /// Fetch the partner capabilities (GET /auth/api-tokens/capabilities, Privy identity token
    /// from LIMITLESS_IDENTITY_TOKEN) and print them as JSON.
    Capabilities {
        #[command(flatten)]
        target: Target,
    },
    /// Send any request, authenticated as the route policy requires, and print the response body.
    Request {
        /// The HTTP method.
        method: String,
        /// The request-target: path, then `?query` if any.
        path_and_query: String,
        #[command(flatten)]
        body: BodyArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Manage API tokens.
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
    /// Serve the embedded mock Limitless server until stopped.
    Mock {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
}

#[derive(Subcommand)]
enum TokensAction {
    /// List the profile's active tokens (HMAC).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Derive a new token (Privy); prints it with its secret, which is shown only once.
    Derive {
        /// A label for the token (at most 128 characters).
        #[arg(long)]
        label: Option<String>,
        /// A scope to grant (repeatable): trading, account_creation, delegated_signing,
        /// withdrawal. Default: the server's, trading.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a token (HMAC).
    Revoke {
        /// The token id.
        token_id: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where requests go.
#[derive(Args)]
struct Target {
    /// The API base URL (default: LIMITLESS_API_URL, else https://api.limitless.exchange).
    #[arg(long, value_name = "URL", conflicts_with = "mock")]
    base_url: Option<String>,
    /// Start the embedded mock server on 127.0.0.1 and use it; its partner credentials fill in
    /// for any that the environment does not hold.
    #[arg(long)]
    mock: bool,
}

#[derive(Args)]
struct BodyArgs {
    /// The request body, verbatim.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the request body from a file, or from standard input with `-`.
    #[arg(long, value_name = "FILE|-")]
    body_file: Option<String>,
}

impl BodyArgs {
    fn read(&self) -> Result<Vec<u8>, Failure> {
        match (&self.body, self.body_file.as_deref()) {
            (Some(text), _) => Ok(text.clone().into_bytes()),
            (None, Some("-")) => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| Failure::local(format!("cannot read the body from stdin: {e}")))?;
                Ok(buf)
            }
            (None, Some(path)) => std::fs::read(path)
                .map_err(|e| Failure::local(format!("cannot read the body from {path}: {e}"))),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[derive(Args)]
struct SignArgs {
    /// The HTTP method (signed upper-cased).
    method: String,
    /// The request-target exactly as it will be sent: path, then `?query` if any.
    path_and_query: String,
    #[command(flatten)]
    body: BodyArgs,
    /// Sign with this timestamp, verbatim, instead of the current time.
    #[arg(long, value_name = "TS")]
    timestamp: Option<String>,
    /// Print the headers as curl -H arguments.
    #[arg(long)]
    curl: bool,
}

/// Why the command failed, and with which exit status.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn local(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
}

impl Failure {
    /// Exit 1 when the server answered or the exchange failed on the network; 2 when the
    /// failure was local and nothing was sent.
    fn from_client(e: client::Error) -> Self {
        // A connection that could not be made sent nothing, but is not the caller's mistake.
        let local = e.is_local() && !matches!(e, client::Error::Connect(_));
        Self {
            code: if local { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sign(args) => sign(&args),
        other => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run(other)),
            Err(e) => Err(Failure::local(format!("cannot start the runtime: {e}"))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("lmts: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Sign(args) => sign(&args),
        Command::Capabilities { target } => {
            let (client, _mock) = connect(&target).await?;
            let caps = client.capabilities().await.map_err(Failure::from_client)?;
            print_json(&caps)
        }
        Command::Request {
            method: m,
            path_and_query: pq,
            body,
            target,
        } => {
            let method = method(&m)?;
            let pq = path_and_query(&pq)?;
            let body = body.read()?;
            let (client, _mock) = connect(&target).await?;
            let body = (!body.is_empty()).then(|| Bytes::from(body));
            let resp = client
                .request(method, pq.as_str(), body)
                .await
                .map_err(Failure::from_client)?
                .error_for_status()
                .map_err(Failure::from_client)?;
            let mut out = resp.body.to_vec();
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            write_stdout(&out)
        }
        Command::Tokens { action } => tokens(action).await,
        Command::Mock { addr } => {
            let server = MockServer::builder()
                .addr(addr)
                .start()
                .await
                .map_err(|e| Failure::local(format!("cannot listen on {addr}: {e}")))?;
            write_stdout(format!("listening on {}\n", server.base_url()).as_bytes())?;
            eprintln!(
                "lmts: mock Limitless API; identity tokens {PARTNER_IDENTITY} (partner) and \
                 {USER_IDENTITY}; HMAC token {PARTNER_TOKEN_ID}. Ctrl-C stops it."
            );
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| Failure::local(format!("cannot wait for Ctrl-C: {e}")))?;
            Ok(())
        }
    }
}

async fn tokens(action: TokensAction) -> Result<(), Failure> {
    match action {
        TokensAction::List { target } => {
            let (client, _mock) = connect(&target).await?;
            let list = client.list_tokens().await.map_err(Failure::from_client)?;
            print_json(&list)
        }
        TokensAction::Derive {
            label,
            scopes,
            target,
        } => {
            let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s)).collect();
            if let Some(unknown) = scopes.iter().find(|s| !s.is_known()) {
                eprintln!(
                    "lmts: warning: {unknown} is not a scope this version knows; sending it anyway"
                );
            }
            let (client, _mock) = connect(&target).await?;
            let token = client
                .derive_token(
                    label.as_deref(),
                    (!scopes.is_empty()).then_some(&scopes[..]),
                )
                .await
                .map_err(Failure::from_client)?;
            eprintln!("lmts: store the secret now: the API returns it only once");
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Shown<'a> {
                api_key: &'a str,
                secret: &'a str,
                token_id: &'a str,
                created_at: &'a str,
                scopes: &'a [Scope],
                profile: &'a limitless_auth::types::TokenProfile,
            }
            print_json(&Shown {
                api_key: &token.api_key,
                secret: token.secret().expose_secret(),
                token_id: &token.token_id,
                created_at: &token.created_at,
                scopes: &token.scopes,
                profile: &token.profile,
            })
        }
        TokensAction::Revoke { token_id, target } => {
            let (client, _mock) = connect(&target).await?;
            let message = client
                .revoke_token(&token_id)
                .await
                .map_err(Failure::from_client)?;
            print_json(&serde_json::json!({ "message": message }))
        }
    }
}

/// A client for `target`, with the mock server it runs against when `--mock` is given.
async fn connect(target: &Target) -> Result<(Client, Option<MockServer>), Failure> {
    let mut creds = Credentials::from_env().map_err(|e| Failure::local(e.to_string()))?;
    let (base_url, mock) = if target.mock {
        let server = MockServer::start()
            .await
            .map_err(|e| Failure::local(format!("cannot start the mock server: {e}")))?;
        let filled = Credentials::new()
            .with_identity(
                IdentityToken::new(PARTNER_IDENTITY).map_err(|e| Failure::local(e.to_string()))?,
            )
            .with_hmac(
                HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET)
                    .map_err(|e| Failure::local(e.to_string()))?,
            );
        creds.identity = creds.identity.or(filled.identity);
        creds.hmac = creds.hmac.or(filled.hmac);
        (server.base_url(), Some(server))
    } else {
        let url = match &target.base_url {
            Some(url) => url.clone(),
            None => {
                std::env::var(ENV_API_URL).unwrap_or_else(|_| client::DEFAULT_BASE_URL.to_owned())
            }
        };
        (url, None)
    };
    let client = Client::builder()
        .base_url(base_url)
        .credentials(creds)
        .build()
        .map_err(Failure::from_client)?;
    Ok((client, mock))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::local(format!("cannot format the output: {e}")))?;
    text.push('\n');
    write_stdout(text.as_bytes())
}

fn method(text: &str) -> Result<Method, Failure> {
    Method::from_bytes(text.as_bytes())
        .map_err(|_| Failure::local(format!("{text:?} is not a valid HTTP method")))
}

fn path_and_query(text: &str) -> Result<PathAndQuery, Failure> {
    text.parse::<PathAndQuery>()
        .ok()
        .filter(|pq| pq.as_str() == text && text.starts_with('/'))
        .ok_or_else(|| {
            Failure::local(format!(
                "{text:?} is not a request-target: give the path starting with '/' and the \
                 query exactly as sent, percent-encoded (no spaces)"
            ))
        })
}

fn sign(args: &SignArgs) -> Result<(), Failure> {
    let method = method(&args.method)?;
    let target = path_and_query(&args.path_and_query)?;
    let body = args.body.read()?;
    let creds = Credentials::from_env().map_err(|e| Failure::local(e.to_string()))?;
    let hmac = creds.hmac.ok_or_else(|| {
        Failure::local(format!("set {ENV_TOKEN_ID} and {ENV_TOKEN_SECRET} to sign"))
    })?;
    let now;
    let timestamp = match &args.timestamp {
        Some(ts) if !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_graphic()) => ts.as_str(),
        Some(_) => {
            return Err(Failure::local(
                "--timestamp must be non-empty visible ASCII (it is sent as a header)",
            ));
        }
        None => {
            now = Timestamp::now(&SystemClock).map_err(|e| Failure::local(e.to_string()))?;
            now.as_str()
        }
    };
    let signature = hmac.sign(timestamp, method.as_str(), target.as_str(), &body);
    let headers = [
        ("lmts-api-key", hmac.token_id()),
        ("lmts-timestamp", timestamp),
        ("lmts-signature", signature.as_str()),
    ];
    let out = if args.curl {
        let quoted: Vec<String> = headers
            .iter()
            .map(|(k, v)| format!("-H {}", shell_quote(&format!("{k}: {v}"))))
            .collect();
        format!("{}\n", quoted.join(" "))
    } else {
        headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
    };
    write_stdout(out.as_bytes())
}

/// Single-quotes `s` for POSIX shells.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::local(format!("cannot write to stdout: {e}")))
}
