//! The connection's part of `enroll`: what it answers itself before the key store is asked
//! ([`screen`]), and what it does with the key store's answer ([`settle`]).

use std::time::Duration;

use at_common::error::AtError;
use at_common::reply::Reply;
use at_common::verb::{json_string, Enroll, EnrollOp, EnrollmentStatus};
use serde::Deserialize;

use super::{checked_params, refuse, Step, REVOKED_SELF_CLOSE_AFTER};
use crate::access::{self, Asker};

/// What the connection answers itself before the key store sees `cmd` from `who`: `None` to
/// go on to the key store. `admit_request` is the connection's request limit, asked once for a
/// `request` whose parameters are good (in the reference's order: parameters, limit, OTP).
pub fn screen(
    cmd: &Enroll,
    who: &Asker,
    admit_request: impl FnOnce() -> bool,
) -> Option<Result<Reply, AtError>> {
    match screen_step(cmd, who, admit_request) {
        Ok(()) => None,
        Err(error) => Some(Err(error)),
    }
}

pub(super) fn screen_step(
    cmd: &Enroll,
    who: &Asker,
    admit_request: impl FnOnce() -> bool,
) -> Step<()> {
    match cmd.operation {
        EnrollOp::Request => {
            checked_params(cmd)?;
            if !admit_request() {
                return Err(refuse(
                    "Enrollment requests have exceeded the limit within the specified time frame",
                ));
            }
            Ok(())
        }
        EnrollOp::Revoke => {
            let params = checked_params(cmd)?;
            access::revoke(who, params.enrollment_id.as_deref(), cmd.force)
        }
        _ => Ok(()),
    }
}

/// The key store's answer to `cmd` from `who`, as the connection passes it on.
#[derive(Debug)]
pub struct Settled {
    pub result: Result<Reply, AtError>,
    /// The enrollment the connection now acts as (its approved `request`).
    pub enrollment_id: Option<String>,
    /// Close the connection after this long (it revoked its own enrollment with `force`).
    pub close_after: Option<Duration>,
    /// The enrollment this command revoked: its connections are to close.
    pub revoked: Option<String>,
}

/// What the connection does with the key store's `result` for `cmd` from `who`.
pub fn settle(cmd: &Enroll, who: &Asker, result: Result<Reply, AtError>) -> Settled {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answered {
        enrollment_id: Option<String>,
        status: Option<String>,
    }
    let answered = match &result {
        Ok(Reply::Data(json)) => serde_json::from_str::<Answered>(json).ok(),
        _ => None,
    };
    let mut settled = Settled {
        result,
        enrollment_id: None,
        close_after: None,
        revoked: None,
    };
    let Some(Answered {
        enrollment_id: Some(id),
        status: Some(status),
    }) = answered
    else {
        return settled;
    };
    if cmd.operation == EnrollOp::Revoke && status == EnrollmentStatus::Revoked.as_str() {
        settled.revoked = Some(id.clone());
    }
    match cmd.operation {
        EnrollOp::Request if status == EnrollmentStatus::Approved.as_str() => {
            settled.enrollment_id = Some(id);
        }
        EnrollOp::Revoke
            if cmd.force
                && status == EnrollmentStatus::Revoked.as_str()
                && who.enrollment() == Some(id.as_str()) =>
        {
            settled.result = Ok(Reply::Data(format!(
                r#"{{"status":"revoked","enrollmentId":{},"message":"Enrollment is revoked. Closing the connection in 10 seconds"}}"#,
                json_string(&id)
            )));
            settled.close_after = Some(REVOKED_SELF_CLOSE_AFTER);
        }
        _ => {}
    }
    settled
}
