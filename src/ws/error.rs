//! What can go wrong with a socket.

use http::StatusCode;

use crate::{BoxError, PolicyError, SigningError};

/// A socket could not be opened, or has ended.
///
/// No variant holds a credential: messages name the URL and the server's answer only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The URL is not a socket URL; nothing was sent.
    #[error("invalid socket URL {url:?}: {reason}; nothing was sent")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TLS configuration could not be used; nothing was sent.
    #[error("the TLS configuration cannot be used: {0}; nothing was sent")]
    Tls(String),
    /// The upgrade request could not be signed; nothing was sent.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// The policy refused the upgrade request; nothing was sent.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The server refused the socket's credentials: HTTP 401 or 403 on the upgrade
    /// (`status`), or the `/markets` namespace's connect error (no `status`), unless its
    /// message says it passes (an overloaded or restarting server). Final: the socket does not
    /// retry with the credentials it was refused.
    #[error("the server refused the socket{}: {message}", Status(*.status))]
    Refused {
        /// The HTTP status of a refused upgrade.
        status: Option<StatusCode>,
        /// The server's message.
        message: String,
    },
    /// The first connection could not be opened (TCP, TLS, the upgrade, the Engine.IO
    /// session or the namespace), or did not open in time.
    #[error("could not open the socket: {0}")]
    Connect(#[source] BoxError),
    /// The socket was lost, and reconnecting was given up after `attempts` attempts
    /// ([`SocketBuilder::max_reconnect_attempts`](super::SocketBuilder::max_reconnect_attempts)).
    #[error("the socket was lost and {attempts} reconnect attempts failed; the last: {last}")]
    GaveUp {
        /// How many attempts failed in a row.
        attempts: u32,
        /// Why the last one failed.
        #[source]
        last: BoxError,
    },
    /// The socket has ended: it was closed, or its task stopped; nothing was sent.
    #[error("the socket is closed; nothing was sent")]
    Closed,
}

impl WsError {
    /// Whether the server refused the credentials ([`WsError::Refused`]).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// ` (HTTP 401 Unauthorized)`, or nothing.
struct Status(Option<StatusCode>);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(status) => write!(f, " (HTTP {status})"),
            None => Ok(()),
        }
    }
}
