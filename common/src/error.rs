//! `AtError`: the only table of protocol error codes.
//!
//! [`ErrorCode`] is the one enum of every code the spec and the reference (at_commons
//! `error_message.dart`, docs/protocol.md#error-codes) use. Its `code()`, `description()` and
//! `closes_connection()` are exhaustive matches, so adding a code fails to compile until it has
//! all three. [`AtError`] is a code plus an optional detail message (the reference exception's
//! `message`). How an error becomes bytes on the wire is decided in `reply.rs` only.

use std::fmt;

/// Every protocol error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// AT0001, `AtServerException`.
    ServerException,
    /// AT0002, `DataStoreException`: the keystore failed.
    DataStore,
    /// AT0003, `InvalidSyntaxException`: the command does not parse.
    InvalidSyntax,
    /// AT0004, `SocketException`.
    Socket,
    /// AT0005, `BufferOverFlowException`: a line longer than the buffer limit.
    BufferLimitExceeded,
    /// AT0006, `OutboundConnectionLimitException`.
    OutboundConnectionLimit,
    /// AT0007, `SecondaryNotFoundException`: the directory does not know the atSign.
    SecondaryNotFound,
    /// AT0008, `HandShakeException`: from/pol with another atServer failed.
    HandshakeFailure,
    /// AT0009, `UnAuthorizedException`.
    Unauthorized,
    /// AT0010, `InternalServerError`.
    InternalServerError,
    /// AT0011, `InternalServerException`; also the reference's fallback for unmapped exceptions.
    InternalServerException,
    /// AT0012, `InboundConnectionLimitException`.
    InboundConnectionLimit,
    /// AT0013, `BlockedConnectionException`: a blocked atSign tried `from`.
    BlockedConnection,
    /// AT0014, `AtClientException`.
    AtClient,
    /// AT0015, `KeyNotFoundException`.
    KeyNotFound,
    /// AT0016, `InvalidAtKeyException`.
    InvalidKey,
    /// AT0021, `SecondaryConnectException`.
    SecondaryConnect,
    /// AT0022, `IllegalArgumentException`.
    IllegalArguments,
    /// AT0023, `AtTimeoutException`.
    Timeout,
    /// AT0024, `ServerIsPausedException`.
    ServerPaused,
    /// AT0025, APKAM enrollment denied.
    ApkamAuthDenied,
    /// AT0026, APKAM enrollment pending or failed.
    ApkamAuthFailed,
    /// AT0027, APKAM access revoked.
    ApkamAccessRevoked,
    /// AT0028, throttling (the reference also uses it for "enrollment expired").
    TooManyRequests,
    /// AT0029, `AtInvalidEnrollmentException`.
    InvalidEnrollment,
    /// AT0030, invalid enrollment status.
    InvalidEnrollmentStatus,
    /// AT0031, `AtEnrollmentRevokeException`.
    EnrollmentRevoked,
    /// AT0401, `UnAuthenticatedException`: authentication failed or is missing.
    Unauthenticated,
}

impl ErrorCode {
    /// Every code, in table order; for tests and for documentation.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::ServerException,
        ErrorCode::DataStore,
        ErrorCode::InvalidSyntax,
        ErrorCode::Socket,
        ErrorCode::BufferLimitExceeded,
        ErrorCode::OutboundConnectionLimit,
        ErrorCode::SecondaryNotFound,
        ErrorCode::HandshakeFailure,
        ErrorCode::Unauthorized,
        ErrorCode::InternalServerError,
        ErrorCode::InternalServerException,
        ErrorCode::InboundConnectionLimit,
        ErrorCode::BlockedConnection,
        ErrorCode::AtClient,
        ErrorCode::KeyNotFound,
        ErrorCode::InvalidKey,
        ErrorCode::SecondaryConnect,
        ErrorCode::IllegalArguments,
        ErrorCode::Timeout,
        ErrorCode::ServerPaused,
        ErrorCode::ApkamAuthDenied,
        ErrorCode::ApkamAuthFailed,
        ErrorCode::ApkamAccessRevoked,
        ErrorCode::TooManyRequests,
        ErrorCode::InvalidEnrollment,
        ErrorCode::InvalidEnrollmentStatus,
        ErrorCode::EnrollmentRevoked,
        ErrorCode::Unauthenticated,
    ];

    /// The wire code, e.g. `"AT0003"`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::ServerException => "AT0001",
            ErrorCode::DataStore => "AT0002",
            ErrorCode::InvalidSyntax => "AT0003",
            ErrorCode::Socket => "AT0004",
            ErrorCode::BufferLimitExceeded => "AT0005",
            ErrorCode::OutboundConnectionLimit => "AT0006",
            ErrorCode::SecondaryNotFound => "AT0007",
            ErrorCode::HandshakeFailure => "AT0008",
            ErrorCode::Unauthorized => "AT0009",
            ErrorCode::InternalServerError => "AT0010",
            ErrorCode::InternalServerException => "AT0011",
            ErrorCode::InboundConnectionLimit => "AT0012",
            ErrorCode::BlockedConnection => "AT0013",
            ErrorCode::AtClient => "AT0014",
            ErrorCode::KeyNotFound => "AT0015",
            ErrorCode::InvalidKey => "AT0016",
            ErrorCode::SecondaryConnect => "AT0021",
            ErrorCode::IllegalArguments => "AT0022",
            ErrorCode::Timeout => "AT0023",
            ErrorCode::ServerPaused => "AT0024",
            ErrorCode::ApkamAuthDenied => "AT0025",
            ErrorCode::ApkamAuthFailed => "AT0026",
            ErrorCode::ApkamAccessRevoked => "AT0027",
            ErrorCode::TooManyRequests => "AT0028",
            ErrorCode::InvalidEnrollment => "AT0029",
            ErrorCode::InvalidEnrollmentStatus => "AT0030",
            ErrorCode::EnrollmentRevoked => "AT0031",
            ErrorCode::Unauthenticated => "AT0401",
        }
    }

    /// The reference's standard description (at_commons `error_description`), exactly.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::ServerException => "Server exception",
            ErrorCode::DataStore => "DataStore exception",
            ErrorCode::InvalidSyntax => "Invalid syntax",
            ErrorCode::Socket => "Socket error",
            ErrorCode::BufferLimitExceeded => "Buffer limit exceeded",
            ErrorCode::OutboundConnectionLimit => "Outbound connection limit exceeded",
            ErrorCode::SecondaryNotFound => "Secondary server not found",
            ErrorCode::HandshakeFailure => "Handshake failure",
            ErrorCode::Unauthorized => "UnAuthorized client in request",
            ErrorCode::InternalServerError => "Internal server error",
            ErrorCode::InternalServerException => "Internal server exception",
            ErrorCode::InboundConnectionLimit => "Inbound connection limit exceeded",
            ErrorCode::BlockedConnection => "Connection Exception",
            ErrorCode::AtClient => "Unknown AtClient exception",
            ErrorCode::KeyNotFound => "key not found",
            ErrorCode::InvalidKey => "Invalid key",
            ErrorCode::SecondaryConnect => "Unable to connect to secondary",
            ErrorCode::IllegalArguments => "Illegal arguments",
            ErrorCode::Timeout => "Timeout waiting for response",
            ErrorCode::ServerPaused => "Server is paused",
            ErrorCode::ApkamAuthDenied => "Apkam Auth Denied",
            ErrorCode::ApkamAuthFailed => "Apkam Auth Failed",
            ErrorCode::ApkamAccessRevoked => "Apkam Access Revoked",
            ErrorCode::TooManyRequests => "Too Many Requests",
            // The reference's table names the exception classes for 29 and 31 but not their
            // texts (docs/protocol.md#error-codes).
            ErrorCode::InvalidEnrollment => "Invalid Enrollment",
            ErrorCode::InvalidEnrollmentStatus => "Invalid Enrollment Status",
            // As the reference's functional tests read it: `Cannot revoke self enrollment :
            // Current client cannot revoke its own enrollment`.
            ErrorCode::EnrollmentRevoked => "Cannot revoke self enrollment",
            ErrorCode::Unauthenticated => "Client authentication failed",
        }
    }

    /// Whether the reference closes the connection after writing this error
    /// (docs/protocol.md#which-errors-close).
    ///
    /// The spec says failed cram/pkam/pol close the connection; the reference keeps it open
    /// (AT0401) and real clients rely on that, so we follow the reference. Syntax errors (AT0003)
    /// keep the connection open too. The connection-limit refusal (AT0012) is written to a
    /// connection that is then dropped without ever serving it.
    pub fn closes_connection(self) -> bool {
        match self {
            ErrorCode::DataStore
            | ErrorCode::BufferLimitExceeded
            | ErrorCode::InternalServerException
            | ErrorCode::InboundConnectionLimit
            | ErrorCode::BlockedConnection
            | ErrorCode::ServerPaused => true,
            ErrorCode::ServerException
            | ErrorCode::InvalidSyntax
            | ErrorCode::Socket
            | ErrorCode::OutboundConnectionLimit
            | ErrorCode::SecondaryNotFound
            | ErrorCode::HandshakeFailure
            | ErrorCode::Unauthorized
            | ErrorCode::InternalServerError
            | ErrorCode::AtClient
            | ErrorCode::KeyNotFound
            | ErrorCode::InvalidKey
            | ErrorCode::SecondaryConnect
            | ErrorCode::IllegalArguments
            | ErrorCode::Timeout
            | ErrorCode::ApkamAuthDenied
            | ErrorCode::ApkamAuthFailed
            | ErrorCode::ApkamAccessRevoked
            | ErrorCode::TooManyRequests
            | ErrorCode::InvalidEnrollment
            | ErrorCode::InvalidEnrollmentStatus
            | ErrorCode::EnrollmentRevoked
            | ErrorCode::Unauthenticated => false,
        }
    }

    /// The code for a wire string such as `"AT0015"`, as a peer's reply carries it.
    pub fn from_code(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A protocol error: a code, usually the reference exception's message, and what the
/// connection does after it: closes when the code says so ([`ErrorCode::closes_connection`])
/// unless the error keeps it open.
///
/// Most errors are the reference's exceptions (`error:AT0015-<description>`); a few are set by
/// a handler instead ([`AtError::set_by_handler`]: `error:AT0025:<message>`, never closing).
///
/// # Errors
/// Every fallible protocol operation in this workspace returns `Result<_, AtError>`; the
/// connection turns it into a reply with [`crate::reply::Reply::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AtError {
    code: ErrorCode,
    detail: Option<String>,
    /// Whether the connection closes after it, when not as the code says.
    closes: Option<bool>,
    set_by_handler: bool,
}

impl AtError {
    /// An error with no detail message.
    pub fn new(code: ErrorCode) -> AtError {
        AtError {
            code,
            detail: None,
            closes: None,
            set_by_handler: false,
        }
    }

    /// An error with a detail message (the reference exception's `message`).
    pub fn with_detail(code: ErrorCode, detail: impl Into<String>) -> AtError {
        AtError {
            detail: Some(detail.into()),
            ..AtError::new(code)
        }
    }

    /// An error the reference's handler sets rather than throws: written
    /// `error:<code>:<message>` (no standard description, whoever asks), and the connection
    /// stays open. The APKAM refusals of `pkam` and `enroll` (AT0025..AT0028).
    pub fn set_by_handler(code: ErrorCode, message: impl Into<String>) -> AtError {
        AtError {
            set_by_handler: true,
            ..AtError::with_detail(code, message).keeping_open()
        }
    }

    /// The same error, but the connection stays open whatever its code (the reference's
    /// `AtEnrollmentException`, AT0011, is answered and the client goes on).
    pub fn keeping_open(self) -> AtError {
        AtError {
            closes: Some(false),
            ..self
        }
    }

    /// The same error, and the connection closes after it whatever its code (an APKAM
    /// connection whose enrollment is gone: the reference answers, then closes).
    pub fn closing(self) -> AtError {
        AtError {
            closes: Some(true),
            ..self
        }
    }

    /// Whether a handler set this error ([`AtError::set_by_handler`]).
    pub fn is_set_by_handler(&self) -> bool {
        self.set_by_handler
    }

    /// AT0003 with a detail message: the parser's error.
    pub fn syntax(detail: impl Into<String>) -> AtError {
        AtError::with_detail(ErrorCode::InvalidSyntax, detail)
    }

    /// AT0401 for a command only an authenticated owner may run, in the reference's words.
    pub fn needs_auth() -> AtError {
        AtError::with_detail(
            ErrorCode::Unauthenticated,
            "Command cannot be executed without auth",
        )
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The detail message, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The detail message, or the standard description when there is none: what the
    /// reference's exception `message` would have been.
    pub fn message(&self) -> &str {
        self.detail().unwrap_or(self.code.description())
    }

    /// Whether the connection closes after this error: as its code says
    /// ([`ErrorCode::closes_connection`]), unless the error says otherwise.
    pub fn closes_connection(&self) -> bool {
        self.closes.unwrap_or(self.code.closes_connection())
    }
}

impl From<ErrorCode> for AtError {
    fn from(code: ErrorCode) -> AtError {
        AtError::new(code)
    }
}

/// For logs only; the wire form is built by `reply.rs`.
impl fmt::Display for AtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.code(), self.code.description())?;
        if let Some(detail) = &self.detail {
            write!(f, " : {detail}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
            assert!(!code.description().is_empty());
        }
        let mut codes: Vec<_> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn reference_descriptions_are_exact() {
        assert_eq!(ErrorCode::InvalidSyntax.description(), "Invalid syntax");
        assert_eq!(
            ErrorCode::BufferLimitExceeded.description(),
            "Buffer limit exceeded"
        );
        assert_eq!(ErrorCode::KeyNotFound.description(), "key not found");
        assert_eq!(
            ErrorCode::Unauthenticated.description(),
            "Client authentication failed"
        );
        assert_eq!(
            ErrorCode::InboundConnectionLimit.description(),
            "Inbound connection limit exceeded"
        );
        assert_eq!(
            ErrorCode::BlockedConnection.description(),
            "Connection Exception"
        );
    }

    #[test]
    fn failed_authentication_keeps_the_connection_open_as_the_reference_does() {
        assert!(!ErrorCode::Unauthenticated.closes_connection());
        assert!(!ErrorCode::InvalidSyntax.closes_connection());
        assert!(!ErrorCode::KeyNotFound.closes_connection());
    }

    #[test]
    fn buffer_blocked_datastore_paused_and_internal_errors_close() {
        for code in [
            ErrorCode::BufferLimitExceeded,
            ErrorCode::BlockedConnection,
            ErrorCode::DataStore,
            ErrorCode::ServerPaused,
            ErrorCode::InternalServerException,
        ] {
            assert!(code.closes_connection(), "{code}");
        }
    }

    #[test]
    fn message_falls_back_to_the_description() {
        assert_eq!(
            AtError::new(ErrorCode::KeyNotFound).message(),
            "key not found"
        );
        assert_eq!(
            AtError::syntax("invalid command").message(),
            "invalid command"
        );
    }
}
