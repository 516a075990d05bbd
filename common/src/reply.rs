//! `Reply` and `Prompt`: the only place a response becomes bytes.
//!
//! # Format
//! Every reply is written as one buffer, `<payload>\n<prompt>`, because the reference's Dart
//! peers and the Python SDK break when a prompt arrives in a read of its own
//! (docs/protocol.md#prompts, docs/clients.md#framing):
//!
//! ```text
//! data:<payload>\n@alice@              Reply::Data
//! data:null\n@alice@                   Reply::Null
//! data: [{"id":"3",...}]\n@alice@      Reply::DataSpaced (stats, notify:all)
//! @bob@                                Reply::Raw (pol success: no newline, no prompt)
//! error:AT0003-<description>\n@        Reply::Error, legacy form
//! error:{"errorCode":..,"errorDescription":..}\n@   Reply::Error, JSON form (clientConfig > 3.0.37)
//! error:AT0025:<message>\n@            Reply::Error set by a handler (the reference's colon form)
//! notification: {json}\n               Reply::Notification (monitor pushes, never a prompt)
//! error:AT0012-Inbound connection limit exceeded\n   connection_limit_line()
//! ```
//!
//! What an error says, and which prompt follows it, depend on whether the connection is
//! owner-authenticated, not on the prompt a successful reply would get: see
//! [`Reply::render`]. This reproduces the reference's `GlobalExceptionHandler` exactly.

use bytes::{BufMut, Bytes, BytesMut};

use crate::atsign::AtSign;
use crate::error::{AtError, ErrorCode};

/// What follows a reply, telling the client who the server thinks it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Not authenticated: `@`.
    Unauthenticated,
    /// Authenticated (cram/pkam) as the owner: `@alice@`.
    Owner(AtSign),
    /// Authenticated by `pol` as another atSign: `@bob@`.
    Peer(AtSign),
    /// An owner connection that has started `monitor`: no prompt at all, because the Python SDK
    /// reads monitor connections line by line and a prompt would corrupt the next line
    /// (docs/clients.md#monitor). Still owner-authenticated for error texts.
    Monitor(AtSign),
}

impl Prompt {
    /// The prompt text after a successful reply.
    pub fn as_text(&self) -> String {
        match self {
            Prompt::Unauthenticated => "@".to_string(),
            Prompt::Owner(atsign) | Prompt::Peer(atsign) => format!("{atsign}@"),
            Prompt::Monitor(_) => String::new(),
        }
    }

    /// Whether the connection is owner-authenticated (cram or pkam).
    pub fn is_owner(&self) -> bool {
        matches!(self, Prompt::Owner(_) | Prompt::Monitor(_))
    }

    /// The prompt after an error. The reference's exception handler only looks at
    /// `isAuthenticated`, so a pol-authenticated peer gets `@` after an error although it gets
    /// `@bob@` after a success.
    fn after_error(&self) -> String {
        match self {
            Prompt::Owner(_) | Prompt::Monitor(_) => self.as_text(),
            Prompt::Unauthenticated | Prompt::Peer(_) => "@".to_string(),
        }
    }
}

/// How exceptions are written, chosen once per connection by `from:…:clientConfig:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorStyle {
    /// `error:AT0003-<description>`; what clients that announce no version get.
    #[default]
    Legacy,
    /// `error:{"errorCode":"AT0003","errorDescription":"<description>"}`.
    Json,
}

impl ErrorStyle {
    /// The last client version that still gets legacy errors.
    const LAST_LEGACY: (u64, u64, u64) = (3, 0, 37);

    /// JSON when the announced version is greater than 3.0.37, as the reference decides.
    /// An absent or unparsable version means legacy (the reference's default is `'n/a'`).
    pub fn for_client_version(version: Option<&str>) -> ErrorStyle {
        match version.and_then(parse_version) {
            Some(v) if v > ErrorStyle::LAST_LEGACY => ErrorStyle::Json,
            _ => ErrorStyle::Legacy,
        }
    }
}

/// `major.minor.patch`, ignoring a `-pre` or `+build` suffix.
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.trim().split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// A response to one command, or a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `data:<payload>`. The payload must be one line.
    Data(String),
    /// `data:null`, the reference's answer for a null result.
    Null,
    /// `data: <payload>`, with the space that `stats` and `notify:all` put after the colon.
    DataSpaced(String),
    /// Bytes written as they are, with neither newline nor prompt: `pol` success, whose
    /// payload is the new prompt `@bob@`.
    Raw(String),
    /// An exception, in the legacy or JSON form; or an error set by a handler rather than
    /// thrown ([`AtError::set_by_handler`]), in the reference's colon form
    /// `error:<CODE>:<message>` (e.g. the APKAM enrollment refusals AT0025..AT0028 of `pkam`).
    Error(AtError),
    /// A monitor push: `notification: <json>\n`, never followed by a prompt.
    Notification(String),
    /// Nothing at all (`monitor`'s success).
    Silent,
}

/// The refusal written to a connection over the inbound limit, before any prompt.
pub fn connection_limit_line() -> Bytes {
    let code = ErrorCode::InboundConnectionLimit;
    Bytes::from(format!("error:{}-{}\n", code.code(), code.description()))
}

impl Reply {
    /// The reply and its prompt, in one buffer so that they leave in one write.
    ///
    /// Error texts follow the reference: when the connection is owner-authenticated the
    /// description is `"<standard description> : <message>"`, otherwise it is
    /// `"Exception: <message>"` (Dart's `Exception.toString()`); either way a `:` follows the
    /// code, which the Python SDK needs. Error prompts are `@` unless owner-authenticated.
    pub fn render(&self, prompt: &Prompt, style: ErrorStyle) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Reply::Data(payload) => {
                out.put_slice(b"data:");
                out.put_slice(payload.as_bytes());
                finish(&mut out, &prompt.as_text());
            }
            Reply::Null => {
                out.put_slice(b"data:null");
                finish(&mut out, &prompt.as_text());
            }
            Reply::DataSpaced(payload) => {
                out.put_slice(b"data: ");
                out.put_slice(payload.as_bytes());
                finish(&mut out, &prompt.as_text());
            }
            Reply::Raw(text) => out.put_slice(text.as_bytes()),
            Reply::Error(error) if error.is_set_by_handler() => {
                out.put_slice(b"error:");
                out.put_slice(error.code().code().as_bytes());
                out.put_u8(b':');
                out.put_slice(one_line(error.message()).as_bytes());
                finish(&mut out, &prompt.after_error());
            }
            Reply::Error(error) => {
                let description = error_description(error, prompt.is_owner());
                match style {
                    ErrorStyle::Legacy => {
                        out.put_slice(b"error:");
                        out.put_slice(error.code().code().as_bytes());
                        out.put_u8(b'-');
                        out.put_slice(description.as_bytes());
                    }
                    ErrorStyle::Json => {
                        let json = serde_json::json!({
                            "errorCode": error.code().code(),
                            "errorDescription": description,
                        });
                        out.put_slice(b"error:");
                        out.put_slice(json.to_string().as_bytes());
                    }
                }
                finish(&mut out, &prompt.after_error());
            }
            Reply::Notification(json) => {
                out.put_slice(b"notification: ");
                out.put_slice(json.as_bytes());
                out.put_u8(b'\n');
            }
            Reply::Silent => {}
        }
        out.freeze()
    }
}

fn finish(out: &mut BytesMut, prompt: &str) {
    out.put_u8(b'\n');
    out.put_slice(prompt.as_bytes());
}

/// The reference's exception description for this connection state.
fn error_description(error: &AtError, owner: bool) -> String {
    let message = one_line(error.message());
    if owner {
        format!("{} : {}", error.code().description(), message)
    } else {
        format!("Exception: {message}")
    }
}

/// Error text must stay on one line (a `\n@` would end the reply early) and must never hold
/// `data:`, which the Python SDK looks for anywhere in a reply before it looks for `error:`.
/// Other control characters an error echoes from its input (NUL, ESC…) are written escaped
/// (`\u{0}`), so an error never carries raw control bytes to a client's terminal or log.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out.replace("data:", "data :")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_carry_no_raw_control_bytes() {
        let error =
            AtError::with_detail(ErrorCode::InvalidSyntax, "bad \u{0}\u{1b}[31m\tline\nnext");
        let bytes = Reply::Error(error).render(&Prompt::Unauthenticated, ErrorStyle::Legacy);
        assert_eq!(
            &bytes[..],
            &b"error:AT0003-Exception: bad \\u{0}\\u{1b}[31m\\u{9}line next\n@"[..]
        );
    }

    fn alice() -> AtSign {
        AtSign::parse("@alice").unwrap()
    }
    fn bob() -> AtSign {
        AtSign::parse("@bob").unwrap()
    }
    fn text(reply: &Reply, prompt: &Prompt, style: ErrorStyle) -> String {
        String::from_utf8(reply.render(prompt, style).to_vec()).unwrap()
    }

    #[test]
    fn prompts_render_as_the_reference_does() {
        assert_eq!(Prompt::Unauthenticated.as_text(), "@");
        assert_eq!(Prompt::Owner(alice()).as_text(), "@alice@");
        assert_eq!(Prompt::Peer(bob()).as_text(), "@bob@");
        assert_eq!(Prompt::Monitor(alice()).as_text(), "");
    }

    #[test]
    fn data_replies_carry_payload_and_prompt_in_one_buffer() {
        let owner = Prompt::Owner(alice());
        let legacy = ErrorStyle::Legacy;
        assert_eq!(
            text(&Reply::Data("5".into()), &owner, legacy),
            "data:5\n@alice@"
        );
        assert_eq!(text(&Reply::Null, &owner, legacy), "data:null\n@alice@");
        assert_eq!(
            text(&Reply::DataSpaced("[1]".into()), &owner, legacy),
            "data: [1]\n@alice@"
        );
        assert_eq!(
            text(&Reply::Data("ok".into()), &Prompt::Unauthenticated, legacy),
            "data:ok\n@"
        );
    }

    #[test]
    fn pol_success_is_the_bare_peer_prompt() {
        let reply = Reply::Raw("@bob@".into());
        assert_eq!(
            text(&reply, &Prompt::Peer(bob()), ErrorStyle::Legacy),
            "@bob@"
        );
    }

    #[test]
    fn unauthenticated_error_reads_exception_colon_message_and_prompt_at() {
        let err = AtError::with_detail(
            ErrorCode::Unauthenticated,
            "Command cannot be executed without auth",
        );
        assert_eq!(
            text(
                &Reply::Error(err),
                &Prompt::Unauthenticated,
                ErrorStyle::Legacy
            ),
            "error:AT0401-Exception: Command cannot be executed without auth\n@"
        );
    }

    #[test]
    fn owner_error_reads_standard_description_colon_message() {
        let err = AtError::syntax("invalid command");
        assert_eq!(
            text(
                &Reply::Error(err),
                &Prompt::Owner(alice()),
                ErrorStyle::Legacy
            ),
            "error:AT0003-Invalid syntax : invalid command\n@alice@"
        );
    }

    #[test]
    fn pol_peer_gets_prompt_at_after_an_error_but_its_own_prompt_after_success() {
        let peer = Prompt::Peer(bob());
        let err = AtError::with_detail(ErrorCode::KeyNotFound, "x does not exist");
        assert_eq!(
            text(&Reply::Error(err), &peer, ErrorStyle::Legacy),
            "error:AT0015-Exception: x does not exist\n@"
        );
        assert_eq!(
            text(&Reply::Data("1".into()), &peer, ErrorStyle::Legacy),
            "data:1\n@bob@"
        );
    }

    #[test]
    fn json_errors_for_clients_newer_than_3_0_37() {
        let err = AtError::with_detail(
            ErrorCode::KeyNotFound,
            "@alice:phone@alice does not exist in keystore",
        );
        assert_eq!(
            text(&Reply::Error(err), &Prompt::Owner(alice()), ErrorStyle::Json),
            "error:{\"errorCode\":\"AT0015\",\"errorDescription\":\"key not found : @alice:phone@alice does not exist in keystore\"}\n@alice@"
        );
        assert_eq!(
            ErrorStyle::for_client_version(Some("3.0.57")),
            ErrorStyle::Json
        );
        assert_eq!(
            ErrorStyle::for_client_version(Some("3.0.38-beta")),
            ErrorStyle::Json
        );
        assert_eq!(
            ErrorStyle::for_client_version(Some("3.0.37")),
            ErrorStyle::Legacy
        );
        assert_eq!(
            ErrorStyle::for_client_version(Some("n/a")),
            ErrorStyle::Legacy
        );
        assert_eq!(ErrorStyle::for_client_version(None), ErrorStyle::Legacy);
    }

    #[test]
    fn error_without_detail_still_has_a_colon_after_the_code_text() {
        let owner = text(
            &Reply::Error(ErrorCode::KeyNotFound.into()),
            &Prompt::Owner(alice()),
            ErrorStyle::Legacy,
        );
        assert_eq!(owner, "error:AT0015-key not found : key not found\n@alice@");
        let anon = text(
            &Reply::Error(ErrorCode::KeyNotFound.into()),
            &Prompt::Unauthenticated,
            ErrorStyle::Legacy,
        );
        assert_eq!(anon, "error:AT0015-Exception: key not found\n@");
    }

    #[test]
    fn error_text_never_contains_data_colon_or_a_newline() {
        let err = AtError::syntax("bad data:x\n@evil");
        let out = text(
            &Reply::Error(err),
            &Prompt::Unauthenticated,
            ErrorStyle::Legacy,
        );
        assert!(!out.contains("data:"));
        assert_eq!(out.matches('\n').count(), 1);
    }

    #[test]
    fn handler_errors_use_the_colon_form() {
        let err =
            AtError::set_by_handler(ErrorCode::ApkamAuthDenied, "enrollment_id: 12 is denied");
        assert!(!err.closes_connection());
        assert_eq!(
            text(
                &Reply::Error(err),
                &Prompt::Unauthenticated,
                ErrorStyle::Legacy
            ),
            "error:AT0025:enrollment_id: 12 is denied\n@"
        );
    }

    #[test]
    fn monitor_pushes_and_heartbeats_have_no_prompt() {
        let monitor = Prompt::Monitor(alice());
        assert_eq!(
            text(
                &Reply::Notification("{}".into()),
                &monitor,
                ErrorStyle::Legacy
            ),
            "notification: {}\n"
        );
        assert_eq!(
            text(&Reply::Data("ok".into()), &monitor, ErrorStyle::Legacy),
            "data:ok\n"
        );
        assert_eq!(text(&Reply::Silent, &monitor, ErrorStyle::Legacy), "");
    }

    #[test]
    fn connection_limit_line_has_no_prompt() {
        assert_eq!(
            &connection_limit_line()[..],
            b"error:AT0012-Inbound connection limit exceeded\n"
        );
    }
}
