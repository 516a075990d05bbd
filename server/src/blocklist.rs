//! The owner's block list as it is stored: `{"blockList":["@bob",…]}` under
//! `private:blocklist@<me>` ([`crate::reserved::blocklist`]), as the reference stores it, in the
//! order atSigns were added, never committed (so not synced to clients). Read by
//! [`crate::access::admit_peer`] and the `config` verb, changed by `config` alone.
//!
//! # Errors
//! AT0002 (closes) for a stored block list that is not the JSON above.

use at_common::error::AtError;
use at_common::AtSign;
use serde::{Deserialize, Serialize};

use crate::store::{Mutation, Record, Store, StoreError};

/// The stored value, the reference's `Configuration` JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BlockList {
    #[serde(rename = "blockList", default)]
    block_list: Vec<String>,
}

/// Whether `me`'s owner blocked `who`.
pub async fn is_blocked(store: &Store, me: &AtSign, who: &AtSign) -> Result<bool, AtError> {
    Ok(load(store, me).await?.iter().any(|s| s == who.as_str()))
}

pub async fn load(store: &Store, me: &AtSign) -> Result<Vec<String>, AtError> {
    let record = store.get(me, &key(me)).await?;
    parse(me, record.as_ref())
}

/// The block list in `record` (empty if there is none).
fn parse(me: &AtSign, record: Option<&Record>) -> Result<Vec<String>, AtError> {
    let Some(value) = record.and_then(|r| r.value.as_deref()) else {
        return Ok(Vec::new());
    };
    let stored: BlockList = serde_json::from_str(value)
        .map_err(|error| StoreError::Corrupt(format!("{me}'s block list: {error}")))?;
    Ok(stored.block_list)
}

/// Rewrites the stored list with `change` in one atomic read-modify-write (two concurrent
/// `config:block:add` must not lose one); `None` from `change` writes nothing. Whether it wrote.
pub async fn edit(
    store: &Store,
    me: &AtSign,
    change: impl Fn(Vec<String>) -> Option<Vec<String>> + Send + Sync + 'static,
) -> Result<bool, AtError> {
    let owner = me.clone();
    let written = store
        .modify(me, &key(me), move |current| {
            let Some(block_list) = change(parse(&owner, current)?) else {
                return Ok(Mutation::Keep);
            };
            let value =
                serde_json::to_string(&BlockList { block_list }).map_err(StoreError::from)?;
            Ok(Mutation::Put {
                record: Record {
                    value: Some(value),
                    ..Record::default()
                },
                op: None,
            })
        })
        .await?;
    Ok(written.changed)
}

fn key(me: &AtSign) -> String {
    crate::reserved::blocklist(me)
}
