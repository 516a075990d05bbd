//! The parameters each `enroll` operation needs, checked in the reference's order and words.

use at_common::error::{AtError, ErrorCode};
use at_common::verb::{Enroll, EnrollOp, EnrollParams, Namespaces};

use super::{refuse, Step};

/// The parameters of `cmd`, with what its operation requires checked as the reference's
/// `_validateParams` does; `list` may have none.
pub(super) fn checked_params(cmd: &Enroll) -> Step<EnrollParams> {
    let params = match cmd.read_params() {
        Ok(Some(params)) => params,
        Ok(None) if cmd.operation == EnrollOp::List => EnrollParams::default(),
        Ok(None) => {
            return Err(AtError::with_detail(
                ErrorCode::IllegalArguments,
                "Enroll parameters not provided",
            ))
        }
        Err(error) => {
            return Err(AtError::with_detail(
                ErrorCode::InternalServerException,
                format!("FormatException: {error}"),
            ))
        }
    };
    let missing = |field: &Option<String>| field.as_deref().is_none_or(str::is_empty);
    let require = |field: &Option<String>, message: &str| match missing(field) {
        true => Err(refuse(message)),
        false => Ok(()),
    };
    match cmd.operation {
        EnrollOp::Request => {
            require(&params.app_name, "appName is mandatory for enroll:request")?;
            require(
                &params.device_name,
                "deviceName is mandatory for enroll:request",
            )?;
            require(
                &params.apkam_public_key,
                "apkam public key is mandatory for enroll:request",
            )?;
            if params.otp.is_some() {
                require(
                    &params.encrypted_apkam_symmetric_key,
                    "encrypted apkam symmetric key is mandatory for new client enroll:request",
                )?;
                if params.namespaces.as_ref().is_none_or(Namespaces::is_empty) {
                    return Err(refuse(
                        "At least one namespace must be specified for new client enroll:request",
                    ));
                }
            }
        }
        EnrollOp::Approve => {
            require(
                &params.enrollment_id,
                "enrollmentId is mandatory for enroll:approve",
            )?;
            require(
                &params.encrypted_default_encryption_private_key,
                "encryptedDefaultEncryptionPrivateKey is mandatory for enroll:approve",
            )?;
            require(
                &params.encrypted_default_self_encryption_key,
                "encryptedDefaultSelfEncryptionKey is mandatory for enroll:approve",
            )?;
        }
        EnrollOp::Deny | EnrollOp::Revoke | EnrollOp::Unrevoke => require(
            &params.enrollment_id,
            "enrollmentId is mandatory for enroll:revoke/enroll:deny",
        )?,
        EnrollOp::List | EnrollOp::Fetch | EnrollOp::Delete => {}
    }
    Ok(params)
}
