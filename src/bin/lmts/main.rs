//! `lmts`: sign requests for, and talk to, the Limitless Exchange API.
//!
//! Exit status: 0 success; 1 the request was sent (or may have been) and failed, including
//! failing to write the output after a successful request; 2 nothing was sent.

// The argument docs are the `--help` text, where a URL reads best bare.
#![allow(rustdoc::bare_urls)]

use std::io::{Read, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::Method;
use http::uri::PathAndQuery;
use limitless_auth::client::{self, Client};
use limitless_auth::mock::{
    MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET, USER_IDENTITY,
};
use limitless_auth::{
    Credentials, ENV_IDENTITY_TOKEN, ENV_TOKEN_ID, ENV_TOKEN_SCOPES, ENV_TOKEN_SECRET,
    HmacCredentials, IdentityToken, Scope, SystemClock, Timestamp,
};
use secrecy::ExposeSecret as _;

mod ws;

/// Environment variable holding the API base URL.
const ENV_API_URL: &str = "LIMITLESS_API_URL";
/// Environment variable holding the scopes the HMAC token must not hold.
const ENV_DENY_SCOPES: &str = "LMTS_DENY_SCOPES";

/// The largest request body read from `--body`, `--body-file` or standard input.
const BODY_LIMIT: usize = limitless_auth::DEFAULT_BODY_LIMIT;

/// The exit statuses, as one literal for `concat!`.
macro_rules! exit_statuses {
    () => {
        "\
Exit status:
  0  success
  1  the request was sent (or may have been) and failed: an error status (its message on
     stderr), a connection lost or timed out after sending began, or the output could not be
     written after a successful request
  2  nothing was sent: bad arguments, malformed credentials, a policy refusal, or a connection
     that could not be opened"
    };
}

const EXIT_STATUSES: &str = exit_statuses!();

const NETWORK_HELP: &str = concat!(
    "\
Environment:
  LMTS_TOKEN_ID, LMTS_TOKEN_SECRET  HMAC token (id and base64 secret)
  LMTS_TOKEN_SCOPES                 the HMAC token's scopes, comma-separated (optional): a
                                    request the token may not make is refused locally
  LMTS_DENY_SCOPES                  scopes the HMAC token must not hold, comma-separated
                                    (optional; e.g. withdrawal): requests with a token that
                                    holds one are refused; unknown scopes are learned first
  LIMITLESS_IDENTITY_TOKEN          Privy identity token (Privy-only routes)
  LIMITLESS_API_KEY                 legacy API key
  LIMITLESS_API_URL                 base URL when --base-url is not given
With --mock, the mock server's partner credentials fill in for any of these that are unset.

",
    exit_statuses!()
);

const SIGN_HELP: &str = "\
Environment:
  LMTS_TOKEN_ID, LMTS_TOKEN_SECRET  HMAC token (id and base64 secret); no other variable is read

Exit status:
  0  the headers were printed
  2  nothing was printed: bad arguments, malformed or missing credentials, unwritable output";

const MOCK_HELP: &str = "\
Environment: none. The server prints its base URL (first line: `listening on http://ADDR`)
and the seeded partner credentials as `export` lines, ready to paste into a shell; the mock's
secret is public by design.

Exit status:
  0  stopped with Ctrl-C
  2  nothing was served: the server could not start";

#[derive(Parser)]
#[command(
    name = "lmts",
    version,
    about = "Sign requests for, and talk to, the Limitless Exchange API",
    after_help = EXIT_STATUSES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the three HMAC headers for one request (credentials from LMTS_TOKEN_ID and
    /// LMTS_TOKEN_SECRET).
    #[command(after_help = SIGN_HELP)]
    Sign(SignArgs),
    /// Fetch the partner capabilities (GET /auth/api-tokens/capabilities, Privy identity token
    /// from LIMITLESS_IDENTITY_TOKEN) and print them as JSON.
    #[command(after_help = NETWORK_HELP)]
    Capabilities {
        #[command(flatten)]
        target: Target,
    },
    /// Send any request, authenticated as the route policy requires, and print the response body.
    #[command(after_help = NETWORK_HELP)]
    Request {
        /// The HTTP method (sent in upper case).
        method: String,
        /// The request-target: path, then `?query` if any. Non-ASCII characters are
        /// percent-encoded as UTF-8 before signing and sending.
        path_and_query: String,
        #[command(flatten)]
        body: BodyArgs,
        /// The body's content-type. Default: application/json for --body, none for
        /// --body-file.
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Manage API tokens.
    #[command(after_help = NETWORK_HELP)]
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
    /// Print the events of the /markets socket as JSON lines (signed with LMTS_TOKEN_ID and
    /// LMTS_TOKEN_SECRET when set), reconnecting when it is lost.
    #[command(after_help = ws::WS_HELP)]
    Ws(ws::WsArgs),
    /// Serve the embedded mock Limitless server until stopped.
    #[command(after_help = MOCK_HELP)]
    Mock {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
}

#[derive(Subcommand)]
enum TokensAction {
    /// List the profile's active tokens (HMAC).
    #[command(after_help = NETWORK_HELP)]
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Derive a new token (Privy); prints it with its secret, which is shown only once.
    #[command(after_help = NETWORK_HELP)]
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
    /// Rotate the HMAC token: derive a new one (Privy), prove that it works, print it as
    /// `export` lines, then revoke the old one.
    #[command(after_help = NETWORK_HELP)]
    Rotate {
        /// A label for the new token (at most 128 characters).
        #[arg(long)]
        label: Option<String>,
        /// A scope to grant the new token (repeatable). Default: the server's, trading.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a token (HMAC).
    #[command(after_help = NETWORK_HELP)]
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
    /// Give up on an attempt after this many seconds (sending, the answer and its body;
    /// default 30).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err("a number of seconds, more than 0 and at most 86400".into()),
    }
}

#[derive(Args)]
struct BodyArgs {
    /// The request body, verbatim.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the request body from a file, or from standard input with `-` (at most 1 MiB).
    #[arg(long, value_name = "FILE|-")]
    body_file: Option<String>,
}

impl BodyArgs {
    fn read(&self) -> Result<Vec<u8>, Failure> {
        match (&self.body, self.body_file.as_deref()) {
            (Some(text), _) => {
                check_size(text.len())?;
                Ok(text.clone().into_bytes())
            }
            (None, Some("-")) => read_bounded(std::io::stdin().lock(), "stdin"),
            (None, Some(path)) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    Failure::local(format!("cannot read the body from {path}: {e}"))
                })?;
                read_bounded(file, path)
            }
            (None, None) => Ok(Vec::new()),
        }
    }
}

fn check_size(len: usize) -> Result<(), Failure> {
    if len > BODY_LIMIT {
        return Err(Failure::local(format!(
            "the body is larger than the {BODY_LIMIT}-byte limit"
        )));
    }
    Ok(())
}

/// Reads at most the limit plus one byte: constant memory for any file or pipe.
fn read_bounded(reader: impl Read, what: &str) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    reader
        .take(BODY_LIMIT as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure::local(format!("cannot read the body from {what}: {e}")))?;
    check_size(buf.len())?;
    Ok(buf)
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
    /// Nothing was sent: exit 2.
    fn local(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    /// Something was sent (or may have been): exit 1.
    fn sent(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    /// Exit 2 when nothing was sent (a local refusal, or a connection that could not be
    /// opened); 1 when the request was sent or may have been.
    fn from_client(e: client::Error) -> Self {
        if e.is_local() {
            Self::local(e.to_string())
        } else {
            Self::sent(e.to_string())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli.command)),
        Err(e) => Err(Failure::local(format!("cannot start the runtime: {e}"))),
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
            print_json(&caps).map_err(after_sending)
        }
        Command::Request {
            method: m,
            path_and_query: pq,
            body,
            content_type,
            target,
        } => {
            let method = method(&m)?;
            let content_type =
                match (&content_type, &body.body) {
                    (Some(t), _) => Some(http::HeaderValue::from_str(t).map_err(|_| {
                        Failure::local(format!("{t:?} is not a valid content-type"))
                    })?),
                    (None, Some(text)) if !text.is_empty() => {
                        Some(http::HeaderValue::from_static("application/json"))
                    }
                    (None, _) => None,
                };
            let bytes = body.read()?;
            let mut req = http::Request::new(Bytes::from(bytes));
            *req.method_mut() = method;
            *req.uri_mut() = pq.parse().map_err(|_| {
                Failure::local(format!(
                    "{pq:?} is not a request-target: give the path starting with '/' and the \
                     query exactly as sent (spaces percent-encoded)"
                ))
            })?;
            if let Some(t) = content_type {
                req.headers_mut().insert(http::header::CONTENT_TYPE, t);
            }
            let (client, _mock) = connect(&target).await?;
            let resp = client
                .send(req)
                .await
                .map_err(Failure::from_client)?
                .error_for_status()
                .map_err(Failure::from_client)?;
            let mut out = resp.body.to_vec();
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            write_stdout(&out).map_err(after_sending)
        }
        Command::Tokens { action } => tokens(action).await,
        Command::Ws(args) => ws::run(args).await,
        Command::Mock { addr } => {
            let server = MockServer::builder()
                .addr(addr)
                .start()
                .await
                .map_err(|e| Failure::local(format!("cannot listen on {addr}: {e}")))?;
            let url = server.base_url();
            write_stdout(
                format!(
                    "listening on {url}\n\
                     export {ENV_API_URL}={url}\n\
                     export {ENV_TOKEN_ID}={PARTNER_TOKEN_ID}\n\
                     export {ENV_TOKEN_SECRET}={PARTNER_TOKEN_SECRET}\n\
                     export {ENV_IDENTITY_TOKEN}={PARTNER_IDENTITY}\n"
                )
                .as_bytes(),
            )?;
            eprintln!(
                "lmts: mock Limitless API: paste the export lines above into a shell, then run \
                 lmts without --mock. {USER_IDENTITY} is a second identity without a partner \
                 capability row. The socket is `lmts ws --url {}`. Ctrl-C stops it.",
                server.socket_url()
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
            print_json(&list).map_err(after_sending)
        }
        TokensAction::Derive {
            label,
            scopes,
            target,
        } => derive(label, scopes, target).await,
        TokensAction::Rotate {
            label,
            scopes,
            target,
        } => rotate(label, scopes, target).await,
        TokensAction::Revoke { token_id, target } => {
            let (client, _mock) = connect(&target).await?;
            let message = client
                .revoke_token(&token_id)
                .await
                .map_err(Failure::from_client)?;
            print_json(&serde_json::json!({ "message": message })).map_err(after_sending)
        }
    }
}

/// `lmts tokens derive`: the new token, secret included, as JSON.
async fn derive(label: Option<String>, scopes: Vec<String>, target: Target) -> Result<(), Failure> {
    let scopes = parse_scopes(&scopes);
    let (client, _mock) = connect(&target).await?;
    let token = client
        .derive_token(label.as_deref(), scopes.as_deref())
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
    .map_err(|f| {
        Failure::sent(format!(
            "the token {id} was created, but its secret could not be printed ({}); the \
             API does not show it again: revoke the token with `lmts tokens revoke {id}`",
            f.message,
            id = token.token_id
        ))
    })
}

/// `lmts tokens rotate`: the new credentials as `export` lines, then the old token revoked.
async fn rotate(label: Option<String>, scopes: Vec<String>, target: Target) -> Result<(), Failure> {
    let scopes = parse_scopes(&scopes);
    let (client, _mock) = connect(&target).await?;
    let rotation = client
        .switch_to_new_token(label.as_deref(), scopes.as_deref())
        .await
        .map_err(Failure::from_client)?;
    let new = &rotation.token;
    // The new secret goes out first: only once it is stored is the old token revoked.
    let scopes: Vec<&str> = new.scopes.iter().map(Scope::as_str).collect();
    let exports = format!(
        "export {ENV_TOKEN_ID}={}\nexport {ENV_TOKEN_SECRET}={}\nexport {ENV_TOKEN_SCOPES}={}\n",
        new.token_id,
        new.secret().expose_secret(),
        scopes.join(",")
    );
    write_stdout(exports.as_bytes()).map_err(|f| {
        Failure::sent(format!(
            "the token {id} was created, but its secret could not be printed ({}); the \
             old token is still valid and was not revoked; revoke the new one with \
             `lmts tokens revoke {id}`",
            f.message,
            id = new.token_id
        ))
    })?;
    match &rotation.previous_token_id {
        Some(old) if *old != new.token_id => {
            client.revoke_token(old).await.map_err(|e| {
                Failure::sent(format!(
                    "the new token {} is in use (the export lines above), but revoking \
                     the old token {old} failed: {e}; revoke it with \
                     `lmts tokens revoke {old}`",
                    new.token_id
                ))
            })?;
            eprintln!(
                "lmts: rotated: {} replaces {old}, which is revoked",
                new.token_id
            );
        }
        _ => eprintln!(
            "lmts: derived {}; there was no previous token to revoke",
            new.token_id
        ),
    }
    Ok(())
}

/// The `--scope` arguments (`None` without any: the server's default), with a warning for
/// scopes this version does not know.
fn parse_scopes(scopes: &[String]) -> Option<Vec<Scope>> {
    let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s)).collect();
    if let Some(unknown) = scopes.iter().find(|s| matches!(s, Scope::Other(_))) {
        eprintln!("lmts: warning: {unknown} is not a scope this version knows; sending it anyway");
    }
    (!scopes.is_empty()).then_some(scopes)
}

/// The mock server's partner credentials: its identity token and HMAC token.
/// The HMAC token from `LMTS_TOKEN_ID` and `LMTS_TOKEN_SECRET` alone (for `sign` and `ws`):
/// another credential left in the shell is not these commands' business.
fn hmac_from_env() -> Result<Credentials, Failure> {
    Credentials::from_lookup(|name| {
        [ENV_TOKEN_ID, ENV_TOKEN_SECRET]
            .contains(&name)
            .then(|| std::env::var_os(name))
            .flatten()
    })
    .map_err(|e| Failure::local(e.to_string()))
}

fn mock_credentials() -> Result<Credentials, Failure> {
    Ok(Credentials::new()
        .with_identity(
            IdentityToken::new(PARTNER_IDENTITY).map_err(|e| Failure::local(e.to_string()))?,
        )
        .with_hmac(
            HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET)
                .map_err(|e| Failure::local(e.to_string()))?,
        ))
}

/// A client for `target`, with the mock server it runs against when `--mock` is given.
async fn connect(target: &Target) -> Result<(Client, Option<MockServer>), Failure> {
    let mut creds = Credentials::from_env().map_err(|e| Failure::local(e.to_string()))?;
    let (base_url, mock) = if target.mock {
        let server = MockServer::start()
            .await
            .map_err(|e| Failure::local(format!("cannot start the mock server: {e}")))?;
        let filled = mock_credentials()?;
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
    let mut builder = Client::builder().base_url(base_url).credentials(creds);
    if let Some(deny) = std::env::var_os(ENV_DENY_SCOPES) {
        let deny = deny
            .into_string()
            .map_err(|_| Failure::local(format!("{ENV_DENY_SCOPES} is not valid UTF-8")))?;
        builder = builder.deny_scopes(Scope::parse_list(&deny));
    }
    if let Some(timeout) = target.timeout {
        builder = builder.timeout(Some(timeout));
    }
    let client = builder.build().map_err(Failure::from_client)?;
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
    let hmac = hmac_from_env()?.hmac.ok_or_else(|| {
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

/// A failure to write the output of a request that succeeded: it was sent, so exit 1.
fn after_sending(f: Failure) -> Failure {
    Failure::sent(format!("the request succeeded, but {}", f.message))
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::local(format!("cannot write to stdout: {e}")))
}
