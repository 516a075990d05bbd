//! `batch` (docs/protocol.md#batch): several commands in one request, run in order, answered
//! together.
//!
//! The commands are run by whoever calls [`batch`] (the key store's dispatch), through the
//! `run` callback, so a batch does exactly what the same commands sent one by one would do,
//! and this file knows no verb but its own. As in the reference's `batch_verb_handler.dart`,
//! a failing command does not stop the others, nor close the connection (even an error that
//! would close it when sent alone).
//!
//! # Format
//! ```text
//! batch:[{"id":1,"command":"update:public:a@alice 1"},{"id":2,"command":"llookup:a@alice"}]
//! data:[{"id":1,"response":{"data":"5"}},{"id":2,"response":{"error_code":"AT0015","error_message":"key not found"}}]
//! ```
//! Each answer is the reference's `Response.toJson`: `data` for a result, nothing for a null
//! result (`{}`), `error_code` and `error_message` for a failure, where the message is the
//! code's standard description only, never the detail. A command no verb accepts
//! (`invalid command`, or `@exit`) gets no answer at all, as the reference finds no handler
//! for it and skips it. An empty batch answers `data:[]`.

use std::future::Future;
use std::pin::Pin;

use at_common::error::{AtError, ErrorCode};
use at_common::reply::Reply;
use at_common::verb::{Batch, Command};
use serde::Serialize;

/// What the `run` callback of [`batch`] returns for one command: its reply, later.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Reply, AtError>> + 'a>>;

/// One answer of the reply, in the reference's key order.
#[derive(Serialize)]
struct Entry {
    id: i64,
    response: Response,
}

/// The reference's `Response.toJson`: only the fields that are set.
#[derive(Serialize, Default)]
struct Response {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

/// `batch:[…]`: runs each command with `run`, in order, and replies `data:[…]`.
pub async fn batch<'a>(cmd: &Batch, run: impl Fn(Command) -> Answer<'a>) -> Result<Reply, AtError> {
    let mut entries = Vec::with_capacity(cmd.requests.len());
    for request in &cmd.requests {
        let result = match Command::parse(&request.command) {
            Ok(Command::Exit) => continue,
            Ok(command) => run(command).await,
            Err(error) if is_unknown_verb(&error) => continue,
            Err(error) => Err(error),
        };
        entries.push(Entry {
            id: request.id,
            response: response(result),
        });
    }
    let json = serde_json::to_string(&entries)
        .map_err(|_| AtError::new(ErrorCode::InternalServerError))?;
    Ok(Reply::Data(json))
}

/// The parser's answer to a line that names no verb.
fn is_unknown_verb(error: &AtError) -> bool {
    *error == AtError::syntax("invalid command")
}

fn response(result: Result<Reply, AtError>) -> Response {
    let failure = |error: &AtError, message: String| Response {
        error_code: Some(error.code().code()),
        error_message: Some(message),
        ..Response::default()
    };
    match result {
        Ok(Reply::Data(data) | Reply::DataSpaced(data) | Reply::Raw(data)) => Response {
            data: Some(data),
            ..Response::default()
        },
        // A handler-set error carries its own message in the reference's Response.
        Ok(Reply::Error(error)) | Err(error) if error.is_set_by_handler() => {
            failure(&error, error.message().to_string())
        }
        Ok(Reply::Error(error)) | Err(error) => {
            failure(&error, error.code().description().to_string())
        }
        Ok(Reply::Null | Reply::Notification(_) | Reply::Silent) => Response::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::{delete, llookup, update};

    /// A small dispatch for the tests: the verbs a batch of the tests uses.
    async fn one(f: &Fixture, command: Command) -> Result<Reply, AtError> {
        match command {
            Command::Update(c) => update(&f.store, &f.me, &c, NOW).await,
            Command::Llookup(c) => llookup(&f.store, &f.me, &c, NOW).await,
            Command::Delete(c) => delete(&f.store, &f.me, &c).await,
            Command::Batch(c) => Box::pin(batch(&c, |command| Box::pin(one(f, command)))).await,
            _ => Err(AtError::new(ErrorCode::InternalServerException)),
        }
    }

    async fn run(f: &Fixture, line: &str) -> String {
        let Command::Batch(cmd) = command(line) else {
            panic!("not a batch: {line}")
        };
        wire(
            &f.me,
            batch(&cmd, |command| Box::pin(one(f, command))).await,
        )
    }

    #[tokio::test]
    async fn batch_runs_each_command_in_order_and_answers_by_id() {
        let f = fixture().await;
        assert_eq!(
            run(
                &f,
                r#"batch:[{"id":1,"command":"update:public:a@alice 1"},{"id":7,"command":"update:public:a@alice 2"},{"id":3,"command":"llookup:public:a@alice"}]"#
            )
            .await,
            r#"data:[{"id":1,"response":{"data":"0"}},{"id":7,"response":{"data":"1"}},{"id":3,"response":{"data":"2"}}]
@alice@"#
        );
    }

    #[tokio::test]
    async fn errors_are_answered_with_the_standard_description_and_the_rest_still_run() {
        let f = fixture().await;
        assert_eq!(
            run(
                &f,
                r#"batch:[{"id":1,"command":"llookup:nothing@alice"},{"id":2,"command":"delete:publickey@alice"},{"id":3,"command":"update:phone@bob 1"},{"id":4,"command":"llookup:"},{"id":5,"command":"update:k@alice v"}]"#
            )
            .await,
            concat!(
                r#"data:[{"id":1,"response":{"error_code":"AT0015","error_message":"key not found"}},"#,
                r#"{"id":2,"response":{"error_code":"AT0009","error_message":"UnAuthorized client in request"}},"#,
                r#"{"id":3,"response":{"error_code":"AT0016","error_message":"Invalid key"}},"#,
                r#"{"id":4,"response":{"error_code":"AT0003","error_message":"Invalid syntax"}},"#,
                r#"{"id":5,"response":{"data":"0"}}]"#,
                "\n@alice@"
            )
        );
    }

    #[tokio::test]
    async fn commands_no_verb_accepts_get_no_answer() {
        let f = fixture().await;
        assert_eq!(
            run(
                &f,
                r#"batch:[{"id":1,"command":"hello"},{"id":2,"command":"@exit"},{"id":3,"command":"update:k@alice v"}]"#
            )
            .await,
            "data:[{\"id\":3,\"response\":{\"data\":\"0\"}}]\n@alice@"
        );
    }

    #[tokio::test]
    async fn empty_batch_answers_an_empty_list() {
        let f = fixture().await;
        assert_eq!(run(&f, "batch:[]").await, "data:[]\n@alice@");
    }

    #[tokio::test]
    async fn null_results_answer_an_empty_response() {
        let f = fixture().await;
        assert_eq!(
            run(
                &f,
                r#"batch:[{"id":1,"command":"update:ttb:60000:later@alice v"},{"id":2,"command":"llookup:later@alice"}]"#
            )
            .await,
            "data:[{\"id\":1,\"response\":{\"data\":\"0\"}},{\"id\":2,\"response\":{}}]\n@alice@"
        );
    }

    #[tokio::test]
    async fn a_nested_batch_answers_with_its_own_reply_as_data() {
        let f = fixture().await;
        let inner = r#"batch:[{\"id\":1,\"command\":\"update:k@alice v\"}]"#;
        assert_eq!(
            run(&f, &format!(r#"batch:[{{"id":9,"command":"{inner}"}}]"#)).await,
            r#"data:[{"id":9,"response":{"data":"[{\"id\":1,\"response\":{\"data\":\"0\"}}]"}}]
@alice@"#
        );
    }

    #[test]
    fn handler_set_errors_keep_their_message() {
        let error =
            AtError::set_by_handler(ErrorCode::ApkamAuthDenied, "enrollment_id: x is denied");
        let json = serde_json::to_string(&response(Err(error))).unwrap();
        assert_eq!(
            json,
            r#"{"error_code":"AT0025","error_message":"enrollment_id: x is denied"}"#
        );
    }
}
