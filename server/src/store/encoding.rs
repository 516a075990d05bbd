//! How a [`Record`] is stored, the same in every backend: JSON `{"v": value, "m": metadata}`
//! with short field names and the metadata's nulls left out.
//!
//! JSON, not MessagePack: `Metadata`'s serde shape is defined by its JSON form (timestamps as
//! text, lenient deserializers that read through `serde_json::Value`), so a binary format would
//! save little and cost a second, untested encoding of it. One encoding for both backends also
//! lets `at-server migrate` copy records byte for byte.

use at_common::metadata::Metadata;
use serde::{Deserialize, Serialize};

use super::{Record, StoreError};

/// The stored form of a [`Record`]: short field names, metadata without nulls.
#[derive(Serialize)]
struct RecordOut<'a, M: Serialize> {
    v: Option<&'a str>,
    m: M,
}

#[derive(Deserialize)]
struct RecordIn {
    v: Option<String>,
    #[serde(default)]
    m: Metadata,
}

pub fn encode_record(record: &Record) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(&RecordOut {
        v: record.value.as_deref(),
        m: record.metadata.without_nulls(),
    })?)
}

pub fn decode_record(bytes: &[u8]) -> Result<Record, StoreError> {
    let stored: RecordIn = serde_json::from_slice(bytes)?;
    Ok(Record {
        value: stored.v,
        metadata: stored.m,
    })
}
