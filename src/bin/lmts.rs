//! `lmts`: sign requests for, and talk to, the Limitless Exchange API.
//!
//! Exit status: 0 success; 1 the server answered with an error status; 2 a local error (bad
//! arguments, malformed credentials, a policy refusal) with nothing sent.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use http::Method;
use http::uri::PathAndQuery;
use limitless_auth::clock::SystemClock;
use limitless_auth::credentials::{ENV_TOKEN_ID, ENV_TOKEN_SECRET};
use limitless_auth::{Credentials, Timestamp};

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sign(args) => sign(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("lmts: {}", f.message);
            ExitCode::from(f.code)
        }
    }
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
