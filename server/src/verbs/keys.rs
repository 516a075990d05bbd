//! `keys` (docs/authentication.md#keys): the security keys of an enrolled device, kept on the
//! server for it and never synced (no commit entry). Only a login with an enrollment may use
//! it (AT0011 `Keys verb cannot be accessed without an enrollmentId`), and only while the
//! enrollment is approved.
//!
//! - `keys:put:<visibility>:namespace:<ns>[:appName:<a>:deviceName:<d>][:keyType:<t>]`
//!   `[:encryptionKeyName:<e>]:keyName:<n> <value>` → `data:-1`, stored as
//!   `{"value":…,"keyType":…,"enrollmentId":<this login's>,"encryptionKeyName":…}` under
//!   `public:<n>.__public_keys.<ns>@me`, `private:<a>.<d>.<n>.__private_keys.<ns>@me` or
//!   `<a>.<d>.<n>.__self_keys.<ns>@me`; without a visibility nothing is stored (`data:null`).
//! - `keys:get:<visibility>` → the names of this enrollment's keys of that kind (a JSON array;
//!   with `__manage:rw` those in `__global` or `__manage`), plus the encrypted default key
//!   its approver left it (`<id>.default_enc_private_key.__manage@me` for `private`,
//!   `<id>.default_self_enc_key.__manage@me` for `self`).
//! - `keys:get:keyName:<key>` → the stored value (AT0015 `key <key> not found in keystore`).
//! - `keys:delete:keyName:<key>` → `data:-1`, there or not.
//!
//! Ours: the reference reads and deletes any key by name here, whatever the enrollment's
//! namespaces; this server serves by name only the keys this verb keeps (`__public_keys`,
//! `__private_keys`, `__self_keys`) and the `__manage` keys an approver left for this
//! enrollment (any of them for an enrollment holding `__manage`), and answers others as not
//! found, so `keys` is no way around namespace access.

use at_common::error::{AtError, ErrorCode};
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::{json_string, KeyVisibility, Keys, KeysOp};
use at_common::AtSign;

use crate::access::Grant;
use crate::reserved;
use crate::store::Store;

/// `keys:<op>` for `me`'s owner logged in with `grant`'s enrollment (`None`: without one).
pub async fn keys(
    store: &Store,
    me: &AtSign,
    cmd: &Keys,
    grant: Option<&Grant>,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    let Some(grant) = grant else {
        return Err(refuse(
            "Keys verb cannot be accessed without an enrollmentId",
        ));
    };
    if !grant.approved {
        return Err(refuse(&format!(
            "Enrollment Id {} is not approved",
            grant.enrollment
        )));
    }
    match (cmd.operation, &cmd.key_name) {
        (KeysOp::Put, _) => put(store, me, cmd, grant, now).await,
        (KeysOp::Get, Some(name)) => {
            let key = name.to_lowercase();
            let found = match served(&key, grant, me) {
                true => store.get(me, &key).await?.and_then(|r| r.value),
                false => None,
            };
            found.map(Reply::Data).ok_or_else(|| {
                AtError::with_detail(
                    ErrorCode::KeyNotFound,
                    format!("key {name} not found in keystore"),
                )
            })
        }
        (KeysOp::Get, None) => list(store, me, cmd.visibility, grant).await,
        (KeysOp::Delete, name) => {
            let key = name.as_deref().unwrap_or_default().to_lowercase();
            if served(&key, grant, me) {
                store.remove_uncommitted(me, &key).await?;
            }
            Ok(Reply::Data("-1".into()))
        }
    }
}

/// The reference's `AtEnrollmentException` (AT0011, the connection stays open).
fn refuse(message: &str) -> AtError {
    AtError::with_detail(ErrorCode::InternalServerException, message).keeping_open()
}

async fn put(
    store: &Store,
    me: &AtSign,
    cmd: &Keys,
    grant: &Grant,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    let Some(visibility) = cmd.visibility else {
        return Ok(Reply::Null);
    };
    // Absent parts read as the reference's string interpolation of null.
    let part = |p: &Option<String>| p.clone().unwrap_or_else(|| "null".into());
    let (ns, name) = (part(&cmd.namespace), part(&cmd.key_name));
    let (app, device) = (part(&cmd.app_name), part(&cmd.device_name));
    let key = match visibility {
        KeyVisibility::Public => format!("public:{name}.__public_keys.{ns}{me}"),
        KeyVisibility::Private => format!("private:{app}.{device}.{name}.__private_keys.{ns}{me}"),
        KeyVisibility::SelfKey => format!("{app}.{device}.{name}.__self_keys.{ns}{me}"),
    }
    .to_lowercase();
    at_common::limits::check_key(&key)?;
    let optional = |p: &Option<String>| p.as_deref().map_or("null".into(), json_string);
    let value = format!(
        r#"{{"value":{},"keyType":{},"enrollmentId":{},"encryptionKeyName":{}}}"#,
        json_string(&cmd.value),
        optional(&cmd.key_type),
        json_string(&grant.enrollment),
        optional(&cmd.encryption_key_name),
    );
    super::put_uncommitted(store, me, &key, value, now).await?;
    Ok(Reply::Data("-1".into()))
}

/// `keys:get:<visibility>`: this enrollment's keys of that kind, then the default key left
/// for it.
async fn list(
    store: &Store,
    me: &AtSign,
    visibility: Option<KeyVisibility>,
    grant: &Grant,
) -> Result<Reply, AtError> {
    let Some(visibility) = visibility else {
        return Ok(Reply::Data("[]".into()));
    };
    let kind = visibility.as_str();
    let manages = grant.namespaces.get(reserved::MANAGE_NAMESPACE) == Some("rw");
    let global = format!(".__global{me}");
    let manage = format!(".{}{me}", reserved::MANAGE_NAMESPACE);
    let mut names = Vec::new();
    for key in store.keys(me, "").await? {
        let candidate = match manages {
            true => key.contains(kind) && (key.ends_with(&global) || key.ends_with(&manage)),
            false => key.ends_with(&format!(".__{kind}_keys{global}")),
        };
        if !candidate {
            continue;
        }
        let owner = store
            .get(me, &key)
            .await?
            .and_then(|r| r.value)
            .and_then(|v| {
                serde_json::from_str::<serde_json::Value>(&v)
                    .ok()?
                    .get("enrollmentId")?
                    .as_str()
                    .map(str::to_string)
            });
        if owner.as_deref() == Some(grant.enrollment.as_str()) {
            names.push(key);
        }
    }
    let left = match visibility {
        KeyVisibility::Private => Some(reserved::DEFAULT_ENC_PRIVATE_KEY),
        KeyVisibility::SelfKey => Some(reserved::DEFAULT_SELF_ENC_KEY),
        KeyVisibility::Public => None,
    };
    if let Some(left) = left {
        let key = reserved::enrollment_secret(&grant.enrollment, left, me);
        if store.get(me, &key).await?.is_some() {
            names.push(key);
        }
    }
    let json: Vec<String> = names.iter().map(|n| json_string(n)).collect();
    Ok(Reply::Data(format!("[{}]", json.join(","))))
}

/// Whether `keys` reads or deletes `key` by name for `grant`'s enrollment (see the module
/// docs).
fn served(key: &str, grant: &Grant, me: &AtSign) -> bool {
    let Some(name) = key.strip_suffix(me.as_str()) else {
        return false;
    };
    let kept = [".__public_keys.", ".__private_keys.", ".__self_keys."]
        .iter()
        .any(|part| name.contains(part));
    let left_for_it = name.starts_with(&format!("{}.", grant.enrollment))
        && name.ends_with(&format!(".{}", reserved::MANAGE_NAMESPACE));
    let manager = grant.namespaces.get(reserved::MANAGE_NAMESPACE) == Some("rw")
        && name.ends_with(&format!(".{}", reserved::MANAGE_NAMESPACE))
        && !name.ends_with(&format!(".new.enrollments.{}", reserved::MANAGE_NAMESPACE));
    kept || left_for_it || manager
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Record;
    use crate::verbs::testing::{command, fixture, Fixture, NOW};
    use at_common::verb::Command;

    fn grant(id: &str, namespaces: &[(&str, &str)]) -> Grant {
        Grant::approved(id, namespaces)
    }

    async fn run(f: &Fixture, grant: Option<&Grant>, line: &str) -> Result<Reply, AtError> {
        let Command::Keys(cmd) = command(line) else {
            unreachable!("{line}")
        };
        keys(&f.store, &f.me, &cmd, grant, NOW).await
    }

    fn data(text: &str) -> Result<Reply, AtError> {
        Ok(Reply::Data(text.into()))
    }

    #[tokio::test]
    async fn a_device_puts_gets_lists_and_deletes_its_keys_as_the_reference_stores_them() {
        let f = fixture().await;
        let device = grant("e1", &[("wavi", "rw")]);
        let d = Some(&device);
        assert_eq!(
            run(
                &f,
                d,
                "keys:put:public:namespace:__global:keyType:rsa2048:keyName:encryption_e1 MIIBpub"
            )
            .await,
            data("-1")
        );
        assert_eq!(
            run(&f, d, "keys:put:self:namespace:__global:appName:wavi:deviceName:pixel:keyType:aes256:encryptionKeyName:encryption_e1:keyName:myAESkey c2Vj").await,
            data("-1")
        );
        assert_eq!(
            run(
                &f,
                d,
                "keys:get:keyName:public:encryption_e1.__public_keys.__global@alice"
            )
            .await,
            data(
                r#"{"value":"MIIBpub","keyType":"rsa2048","enrollmentId":"e1","encryptionKeyName":null}"#
            )
        );
        assert_eq!(
            run(
                &f,
                d,
                "keys:get:keyName:wavi.pixel.myaeskey.__self_keys.__global@alice"
            )
            .await,
            data(
                r#"{"value":"c2Vj","keyType":"aes256","enrollmentId":"e1","encryptionKeyName":"encryption_e1"}"#
            )
        );
        // Keys are not committed: a client never syncs them.
        assert_eq!(f.store.last_commit_id(&f.me).await.unwrap(), None);
        // The default key its approver left it is listed with its own.
        let left = Record {
            value: Some(r#"{"value":"S1"}"#.into()),
            metadata: Default::default(),
        };
        f.store
            .put_uncommitted(&f.me, "e1.default_self_enc_key.__manage@alice", &left)
            .await
            .unwrap();
        assert_eq!(
            run(&f, d, "keys:get:self").await,
            data(
                r#"["wavi.pixel.myaeskey.__self_keys.__global@alice","e1.default_self_enc_key.__manage@alice"]"#
            )
        );
        assert_eq!(
            run(
                &f,
                d,
                "keys:get:keyName:e1.default_self_enc_key.__manage@alice"
            )
            .await,
            data(r#"{"value":"S1"}"#)
        );
        // Another device's keys are not its to list.
        let other = grant("e2", &[("wavi", "rw")]);
        assert_eq!(run(&f, Some(&other), "keys:get:self").await, data("[]"));
        assert_eq!(
            run(
                &f,
                d,
                "keys:delete:keyName:wavi.pixel.myaeskey.__self_keys.__global@alice"
            )
            .await,
            data("-1")
        );
        let gone = run(
            &f,
            d,
            "keys:get:keyName:wavi.pixel.myaeskey.__self_keys.__global@alice",
        )
        .await
        .unwrap_err();
        assert_eq!(gone.code(), ErrorCode::KeyNotFound);
        assert_eq!(
            gone.message(),
            "key wavi.pixel.myaeskey.__self_keys.__global@alice not found in keystore"
        );
    }

    #[tokio::test]
    async fn keys_needs_an_approved_enrollment_and_is_no_way_around_namespaces() {
        let f = fixture().await;
        let refused = run(&f, None, "keys:get:self").await.unwrap_err();
        assert_eq!(
            refused.message(),
            "Keys verb cannot be accessed without an enrollmentId"
        );
        assert!(!refused.closes_connection());
        let mut revoked = grant("e1", &[("wavi", "rw")]);
        revoked.approved = false;
        assert!(run(&f, Some(&revoked), "keys:get:self").await.is_err());

        let data_key = Record {
            value: Some("secret".into()),
            metadata: Default::default(),
        };
        f.store
            .put_uncommitted(&f.me, "phone.buzz@alice", &data_key)
            .await
            .unwrap();
        f.store
            .put_uncommitted(
                &f.me,
                "e2.default_enc_private_key.__manage@alice",
                &data_key,
            )
            .await
            .unwrap();
        let device = grant("e1", &[("wavi", "rw")]);
        for key in [
            "phone.buzz@alice",
            "e2.default_enc_private_key.__manage@alice",
        ] {
            let line = format!("keys:get:keyName:{key}");
            let error = run(&f, Some(&device), &line).await.unwrap_err();
            assert_eq!(error.code(), ErrorCode::KeyNotFound, "{key}");
        }
        run(&f, Some(&device), "keys:delete:keyName:phone.buzz@alice")
            .await
            .unwrap();
        assert!(f
            .store
            .get(&f.me, "phone.buzz@alice")
            .await
            .unwrap()
            .is_some());
    }
}
