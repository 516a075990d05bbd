//! How a [`Record`] is stored, the same in every backend: one marker byte, then MessagePack.
//!
//! # Format
//! `0xC1` ([`MSGPACK_MARKER`]), then a MessagePack array of two:
//! 1. the value: a string, or nil for a key that has metadata only;
//! 2. the metadata: a map from field number to value holding only the fields that are set.
//!    The numbers are the positions in the reference's `toJson` order
//!    (docs/storage.md#metadata-json), `sharedKeyStatus` last:
//!
//! | # | field | # | field | # | field | # | field | # | field |
//! |---|---|---|---|---|---|---|---|---|---|
//! | 0 | createdBy | 5 | expiresAt | 10 | ttb | 15 | dataSignature | 20 | encAlgo |
//! | 1 | updatedBy | 6 | refreshAt | 11 | ttr | 16 | sharedKeyEnc | 21 | ivNonce |
//! | 2 | createdAt | 7 | status | 12 | ccd | 17 | pubKeyCS | 22 | skeEncKeyName |
//! | 3 | updatedAt | 8 | version | 13 | isBinary | 18 | encoding | 23 | skeEncAlgo |
//! | 4 | availableAt | 9 | ttl | 14 | isEncrypted | 19 | encKeyName | 24 | sharedKeyStatus |
//!
//!    Times are integers (epoch milliseconds), ttl/ttb/ttr/version integers, the flags
//!    booleans, atSigns and the other fields strings: exactly the [`Metadata`] they came from,
//!    every field, every `i64`. An unknown field number is refused as corrupt, not dropped.
//!
//! # The marker, and records written as JSON
//! Records used to be stored as JSON `{"v": value, "m": metadata}`, the metadata as lookup's
//! JSON without nulls ([`encode_record_json`]), and a store may still hold them: such a record
//! always starts with `{`. `0xC1` is the one byte MessagePack never uses and a byte that
//! never occurs in UTF-8 (so in no JSON text), so the first byte tells the forms apart:
//! [`decode_record`] reads `0xC1` as MessagePack and anything else as the legacy JSON.
//! [`encode_record`] writes only MessagePack, so an old record is rewritten in the new form
//! the next time its key is written, and `at-server migrate` (which decodes every record and
//! encodes it again) copies both forms, writing the new one.
//!
//! # Why MessagePack
//! `Metadata`'s serde shape is its JSON form (timestamps as text, lenient deserializers reading
//! through `serde_json::Value`), so a JSON record paid for formatting and parsing dates and for
//! a `Value` per field, on the writer for every update. The stored form here is its own,
//! written and read field by field with times as integers. Measured in one run
//! (`record-bench` in tests/src/bin, medians on a loaded 2-CPU machine), JSON → MessagePack:
//! a public key with a 4-byte value and the metadata `update` stamps, 168 → 54 bytes, encode
//! 895 → 265 ns, decode 2289 → 860 ns; a shared key with ttl, ttr and the encryption fields,
//! 927 → 654 bytes, 2705 → 687 ns, 4024 → 1374 ns; an 8 KiB value, 8391 → 8248 bytes,
//! 10476 → 387 ns, 4584 → 1678 ns. Redis `used_memory` per stored key (`server-bench`, small
//! values, with the commit entry and index): 523 → 410 bytes (docs/storage.md#stored-records).

use at_common::metadata::Metadata;
use at_common::AtSign;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::{Record, StoreError};

/// The first byte of a record stored in MessagePack (see [the module](self)).
pub const MSGPACK_MARKER: u8 = 0xC1;

/// Writes `record` in the stored form: [`MSGPACK_MARKER`], then MessagePack.
pub fn encode_record(record: &Record) -> Result<Vec<u8>, StoreError> {
    let value_len = record.value.as_ref().map_or(0, String::len);
    let mut out = Vec::with_capacity(128 + value_len);
    out.push(MSGPACK_MARKER);
    rmp_serde::encode::write(
        &mut out,
        &(record.value.as_deref(), MetadataOut(&record.metadata)),
    )
    .map_err(|e| StoreError::Corrupt(format!("record not encoded: {e}")))?;
    Ok(out)
}

/// Reads a stored record, in either form: MessagePack after [`MSGPACK_MARKER`], else the
/// legacy JSON.
pub fn decode_record(bytes: &[u8]) -> Result<Record, StoreError> {
    match bytes.split_first() {
        Some((&MSGPACK_MARKER, rest)) => {
            let (value, MetadataIn(metadata)): (Option<String>, MetadataIn) =
                rmp_serde::from_slice(rest)
                    .map_err(|e| StoreError::Corrupt(format!("stored record: {e}")))?;
            Ok(Record { value, metadata })
        }
        _ => decode_record_json(bytes),
    }
}

/// The legacy stored form, JSON `{"v": value, "m": metadata}` with the metadata's nulls left
/// out, as records were written before MessagePack. Kept for tests that write a legacy
/// record and for `record-bench`, which compares the two forms; the store never writes it.
pub fn encode_record_json(record: &Record) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(&RecordJsonOut {
        v: record.value.as_deref(),
        m: record.metadata.without_nulls(),
    })?)
}

fn decode_record_json(bytes: &[u8]) -> Result<Record, StoreError> {
    let stored: RecordJsonIn = serde_json::from_slice(bytes)?;
    Ok(Record {
        value: stored.v,
        metadata: stored.m,
    })
}

/// The legacy JSON form: short field names, metadata without nulls.
#[derive(Serialize)]
struct RecordJsonOut<'a, M: Serialize> {
    v: Option<&'a str>,
    m: M,
}

#[derive(Deserialize)]
struct RecordJsonIn {
    v: Option<String>,
    #[serde(default)]
    m: Metadata,
}

// The field numbers of the stored metadata map (the table in the module doc).
const CREATED_BY: u8 = 0;
const UPDATED_BY: u8 = 1;
const CREATED_AT: u8 = 2;
const UPDATED_AT: u8 = 3;
const AVAILABLE_AT: u8 = 4;
const EXPIRES_AT: u8 = 5;
const REFRESH_AT: u8 = 6;
const STATUS: u8 = 7;
const VERSION: u8 = 8;
const TTL: u8 = 9;
const TTB: u8 = 10;
const TTR: u8 = 11;
const CCD: u8 = 12;
const IS_BINARY: u8 = 13;
const IS_ENCRYPTED: u8 = 14;
const DATA_SIGNATURE: u8 = 15;
const SHARED_KEY_ENC: u8 = 16;
const PUB_KEY_CS: u8 = 17;
const ENCODING: u8 = 18;
const ENC_KEY_NAME: u8 = 19;
const ENC_ALGO: u8 = 20;
const IV_NONCE: u8 = 21;
const SKE_ENC_KEY_NAME: u8 = 22;
const SKE_ENC_ALGO: u8 = 23;
const SHARED_KEY_STATUS: u8 = 24;
const FIELDS: usize = 25;

/// One stored metadata value.
#[derive(Clone, Copy)]
enum Field<'a> {
    Text(&'a str),
    Int(i64),
    Bool(bool),
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Field::Text(s) => serializer.serialize_str(s),
            Field::Int(n) => serializer.serialize_i64(n),
            Field::Bool(b) => serializer.serialize_bool(b),
        }
    }
}

/// The metadata as its stored map, written field by field.
struct MetadataOut<'a>(&'a Metadata);

impl<'a> Serialize for MetadataOut<'a> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Named without `..`: a field added to `Metadata` does not compile until it is stored.
        let Metadata {
            created_by,
            updated_by,
            created_at,
            updated_at,
            available_at,
            expires_at,
            refresh_at,
            status,
            version,
            ttl,
            ttb,
            ttr,
            ccd,
            is_binary,
            is_encrypted,
            data_signature,
            shared_key_enc,
            pub_key_cs,
            encoding,
            enc_key_name,
            enc_algo,
            iv_nonce,
            ske_enc_key_name,
            ske_enc_algo,
            shared_key_status,
        } = self.0;
        fn atsign(a: &Option<AtSign>) -> Option<Field<'_>> {
            a.as_ref().map(|a| Field::Text(a.as_str()))
        }
        fn text(s: &Option<String>) -> Option<Field<'_>> {
            s.as_deref().map(Field::Text)
        }
        fn int(n: &Option<i64>) -> Option<Field<'static>> {
            n.map(Field::Int)
        }
        fn flag(b: &Option<bool>) -> Option<Field<'static>> {
            b.map(Field::Bool)
        }
        let fields: [Option<Field<'a>>; FIELDS] = [
            atsign(created_by),
            atsign(updated_by),
            int(created_at),
            int(updated_at),
            int(available_at),
            int(expires_at),
            int(refresh_at),
            text(status),
            int(version),
            int(ttl),
            int(ttb),
            int(ttr),
            flag(ccd),
            flag(is_binary),
            flag(is_encrypted),
            text(data_signature),
            text(shared_key_enc),
            text(pub_key_cs),
            text(encoding),
            text(enc_key_name),
            text(enc_algo),
            text(iv_nonce),
            text(ske_enc_key_name),
            text(ske_enc_algo),
            text(shared_key_status),
        ];
        let set = fields.iter().filter(|f| f.is_some()).count();
        let mut map = serializer.serialize_map(Some(set))?;
        for (number, field) in fields.iter().enumerate() {
            if let Some(field) = field {
                map.serialize_entry(&(number as u8), field)?;
            }
        }
        map.end()
    }
}

/// The metadata read back from its stored map.
struct MetadataIn(Metadata);

impl<'de> Deserialize<'de> for MetadataIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MetadataVisitor)
    }
}

struct MetadataVisitor;

impl<'de> Visitor<'de> for MetadataVisitor {
    type Value = MetadataIn;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map from metadata field number to value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetadataIn, A::Error> {
        let mut m = Metadata::default();
        while let Some(number) = map.next_key::<u8>()? {
            match number {
                CREATED_BY => m.created_by = Some(atsign::<A::Error>(map.next_value()?)?),
                UPDATED_BY => m.updated_by = Some(atsign::<A::Error>(map.next_value()?)?),
                CREATED_AT => m.created_at = Some(map.next_value()?),
                UPDATED_AT => m.updated_at = Some(map.next_value()?),
                AVAILABLE_AT => m.available_at = Some(map.next_value()?),
                EXPIRES_AT => m.expires_at = Some(map.next_value()?),
                REFRESH_AT => m.refresh_at = Some(map.next_value()?),
                STATUS => m.status = Some(map.next_value()?),
                VERSION => m.version = Some(map.next_value()?),
                TTL => m.ttl = Some(map.next_value()?),
                TTB => m.ttb = Some(map.next_value()?),
                TTR => m.ttr = Some(map.next_value()?),
                CCD => m.ccd = Some(map.next_value()?),
                IS_BINARY => m.is_binary = Some(map.next_value()?),
                IS_ENCRYPTED => m.is_encrypted = Some(map.next_value()?),
                DATA_SIGNATURE => m.data_signature = Some(map.next_value()?),
                SHARED_KEY_ENC => m.shared_key_enc = Some(map.next_value()?),
                PUB_KEY_CS => m.pub_key_cs = Some(map.next_value()?),
                ENCODING => m.encoding = Some(map.next_value()?),
                ENC_KEY_NAME => m.enc_key_name = Some(map.next_value()?),
                ENC_ALGO => m.enc_algo = Some(map.next_value()?),
                IV_NONCE => m.iv_nonce = Some(map.next_value()?),
                SKE_ENC_KEY_NAME => m.ske_enc_key_name = Some(map.next_value()?),
                SKE_ENC_ALGO => m.ske_enc_algo = Some(map.next_value()?),
                SHARED_KEY_STATUS => m.shared_key_status = Some(map.next_value()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown metadata field number {other}"
                    )))
                }
            }
        }
        Ok(MetadataIn(m))
    }
}

fn atsign<E: de::Error>(text: &str) -> Result<AtSign, E> {
    AtSign::parse(text).map_err(|e| E::custom(format!("atSign {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A record written by the JSON encoder before MessagePack, byte for byte.
    const LEGACY: &str = r#"{"v":"v","m":{"createdBy":"@alice","createdAt":"2024-10-24 01:35:02.123Z","updatedAt":"2024-10-24 01:35:02.456Z","status":"active","version":0,"ttl":0,"ccd":false,"isEncrypted":true,"sharedKeyEnc":"c2tl"}}"#;

    fn legacy_record() -> Record {
        Record {
            value: Some("v".into()),
            metadata: Metadata {
                created_by: Some(AtSign::parse("@alice").unwrap()),
                created_at: Some(1_729_733_702_123),
                updated_at: Some(1_729_733_702_456),
                status: Some("active".into()),
                version: Some(0),
                ttl: Some(0),
                ccd: Some(false),
                is_encrypted: Some(true),
                shared_key_enc: Some("c2tl".into()),
                ..Metadata::default()
            },
        }
    }

    fn round_trip(record: &Record) -> Record {
        let bytes = encode_record(record).expect("encodes");
        assert_eq!(bytes[0], MSGPACK_MARKER);
        decode_record(&bytes).expect("decodes")
    }

    /// Every field set, to `text` for the strings and `n` for the numbers.
    fn all_set(text: &str, n: i64, flag: bool, by: &str) -> Metadata {
        let by = AtSign::parse(by).unwrap();
        Metadata {
            created_by: Some(by.clone()),
            updated_by: Some(by),
            created_at: Some(n),
            updated_at: Some(n),
            available_at: Some(n),
            expires_at: Some(n),
            refresh_at: Some(n),
            status: Some(text.into()),
            version: Some(n),
            ttl: Some(n),
            ttb: Some(n),
            ttr: Some(n),
            ccd: Some(flag),
            is_binary: Some(flag),
            is_encrypted: Some(flag),
            data_signature: Some(text.into()),
            shared_key_enc: Some(text.into()),
            pub_key_cs: Some(text.into()),
            encoding: Some(text.into()),
            enc_key_name: Some(text.into()),
            enc_algo: Some(text.into()),
            iv_nonce: Some(text.into()),
            ske_enc_key_name: Some(text.into()),
            ske_enc_algo: Some(text.into()),
            shared_key_status: Some(text.into()),
        }
    }

    #[test]
    fn an_empty_record_is_the_marker_and_three_bytes() {
        let empty = Record::default();
        assert_eq!(
            encode_record(&empty).unwrap(),
            [MSGPACK_MARKER, 0x92, 0xC0, 0x80]
        );
        assert_eq!(round_trip(&empty), empty);
    }

    #[test]
    fn every_field_round_trips_at_its_extremes() {
        for n in [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            127,
            128,
            1 << 32,
            i64::MAX,
        ] {
            for text in [
                "",
                "null",
                "active",
                "é🛠\u{0}\u{10FFFF}",
                "x".repeat(70_000).as_str(),
            ] {
                for flag in [false, true] {
                    for by in ["@alice", "@alice🛠", format!("@{}", "ü".repeat(55)).as_str()] {
                        let record = Record {
                            value: Some(text.to_string()),
                            metadata: all_set(text, n, flag, by),
                        };
                        assert_eq!(round_trip(&record), record, "{n} {text:.10} {flag} {by}");
                    }
                }
            }
        }
    }

    #[test]
    fn each_field_alone_round_trips() {
        let full = all_set("s", i64::MAX, true, "@bob");
        let fields = |m: &Metadata| {
            // A metadata per field of `m`: that field alone.
            let only = |f: &dyn Fn(&mut Metadata)| {
                let mut one = Metadata::default();
                f(&mut one);
                one
            };
            vec![
                only(&|o| o.created_by = m.created_by.clone()),
                only(&|o| o.updated_by = m.updated_by.clone()),
                only(&|o| o.created_at = m.created_at),
                only(&|o| o.updated_at = m.updated_at),
                only(&|o| o.available_at = m.available_at),
                only(&|o| o.expires_at = m.expires_at),
                only(&|o| o.refresh_at = m.refresh_at),
                only(&|o| o.status = m.status.clone()),
                only(&|o| o.version = m.version),
                only(&|o| o.ttl = m.ttl),
                only(&|o| o.ttb = m.ttb),
                only(&|o| o.ttr = m.ttr),
                only(&|o| o.ccd = m.ccd),
                only(&|o| o.is_binary = m.is_binary),
                only(&|o| o.is_encrypted = m.is_encrypted),
                only(&|o| o.data_signature = m.data_signature.clone()),
                only(&|o| o.shared_key_enc = m.shared_key_enc.clone()),
                only(&|o| o.pub_key_cs = m.pub_key_cs.clone()),
                only(&|o| o.encoding = m.encoding.clone()),
                only(&|o| o.enc_key_name = m.enc_key_name.clone()),
                only(&|o| o.enc_algo = m.enc_algo.clone()),
                only(&|o| o.iv_nonce = m.iv_nonce.clone()),
                only(&|o| o.ske_enc_key_name = m.ske_enc_key_name.clone()),
                only(&|o| o.ske_enc_algo = m.ske_enc_algo.clone()),
                only(&|o| o.shared_key_status = m.shared_key_status.clone()),
            ]
        };
        let singles = fields(&full);
        assert_eq!(singles.len(), FIELDS);
        for (number, metadata) in singles.into_iter().enumerate() {
            assert_ne!(metadata, Metadata::default(), "field {number}");
            let record = Record {
                value: None,
                metadata,
            };
            let bytes = encode_record(&record).unwrap();
            // marker, array of 2, nil, map of 1, then the field's number.
            assert_eq!(bytes[..5], [MSGPACK_MARKER, 0x92, 0xC0, 0x81, number as u8]);
            assert_eq!(round_trip(&record), record, "field {number}");
        }
    }

    fn atsign() -> impl Strategy<Value = AtSign> {
        "@[a-z0-9_é🛠ß-]{1,55}".prop_map(|s| AtSign::parse(&s).unwrap())
    }

    fn int() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            -1i64..=1,
            0i64..4_102_444_800_000,
            any::<i64>(),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("null".to_string()),
            any::<String>()
        ]
    }

    prop_compose! {
        fn metadata()(
            (created_by, updated_by, created_at, updated_at, available_at, expires_at,
                refresh_at, status) in (
                proptest::option::of(atsign()), proptest::option::of(atsign()),
                proptest::option::of(int()), proptest::option::of(int()),
                proptest::option::of(int()), proptest::option::of(int()),
                proptest::option::of(int()), proptest::option::of(text()),
            ),
            (version, ttl, ttb, ttr, ccd, is_binary, is_encrypted, data_signature) in (
                proptest::option::of(int()), proptest::option::of(int()),
                proptest::option::of(int()), proptest::option::of(int()),
                proptest::option::of(any::<bool>()), proptest::option::of(any::<bool>()),
                proptest::option::of(any::<bool>()), proptest::option::of(text()),
            ),
            (shared_key_enc, pub_key_cs, encoding, enc_key_name, enc_algo, iv_nonce,
                ske_enc_key_name, ske_enc_algo, shared_key_status) in (
                proptest::option::of(text()), proptest::option::of(text()),
                proptest::option::of(text()), proptest::option::of(text()),
                proptest::option::of(text()), proptest::option::of(text()),
                proptest::option::of(text()), proptest::option::of(text()),
                proptest::option::of(text()),
            ),
        ) -> Metadata {
            Metadata {
                created_by, updated_by, created_at, updated_at, available_at, expires_at,
                refresh_at, status, version, ttl, ttb, ttr, ccd, is_binary, is_encrypted,
                data_signature, shared_key_enc, pub_key_cs, encoding, enc_key_name, enc_algo,
                iv_nonce, ske_enc_key_name, ske_enc_algo, shared_key_status,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_record_round_trips_exactly(
            value in proptest::option::of(text()),
            metadata in metadata(),
        ) {
            let record = Record { value, metadata };
            let bytes = encode_record(&record).unwrap();
            prop_assert_eq!(bytes[0], MSGPACK_MARKER);
            prop_assert_eq!(decode_record(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn a_legacy_json_record_still_reads() {
        assert_eq!(decode_record(LEGACY.as_bytes()).unwrap(), legacy_record());
        // The legacy encoder, kept for the tests and the benchmark, still writes exactly that.
        assert_eq!(
            encode_record_json(&legacy_record()).unwrap(),
            LEGACY.as_bytes()
        );
        // A key with metadata only, a record without `m`, and the lenient values the JSON
        // reader always accepted.
        assert_eq!(
            decode_record(br#"{"v":null,"m":{}}"#).unwrap(),
            Record::default()
        );
        assert_eq!(
            decode_record(br#"{"v":"x"}"#).unwrap().value.as_deref(),
            Some("x")
        );
        let lenient = decode_record(br#"{"v":"x","m":{"ttr":"10000","ccd":"true"}}"#).unwrap();
        assert_eq!(lenient.metadata.ttr, Some(10000));
        assert_eq!(lenient.metadata.ccd, Some(true));
    }

    #[test]
    fn records_in_either_form_decode_the_same() {
        let record = legacy_record();
        let json = encode_record_json(&record).unwrap();
        let msgpack = encode_record(&record).unwrap();
        assert_eq!(json[0], b'{');
        assert_eq!(
            decode_record(&json).unwrap(),
            decode_record(&msgpack).unwrap()
        );
        assert!(
            msgpack.len() < json.len(),
            "MessagePack {} bytes, JSON {}",
            msgpack.len(),
            json.len()
        );
    }

    #[test]
    fn bad_bytes_are_refused_as_corrupt() {
        for bad in [
            &[MSGPACK_MARKER][..],
            &[MSGPACK_MARKER, 0x92, 0xC0][..],
            // Field number 25 does not exist.
            &[MSGPACK_MARKER, 0x92, 0xC0, 0x81, 25, 0xC3][..],
            // A time that is text.
            &[MSGPACK_MARKER, 0x92, 0xC0, 0x81, CREATED_AT, 0xA1, b'1'][..],
            // An atSign that is not one.
            &[MSGPACK_MARKER, 0x92, 0xC0, 0x81, CREATED_BY, 0xA1, b':'][..],
        ] {
            let refused = decode_record(bad);
            assert!(
                matches!(refused, Err(StoreError::Corrupt(_))),
                "{bad:?}: {refused:?}"
            );
        }
        assert!(matches!(
            decode_record(b"not json"),
            Err(StoreError::Encoding(_))
        ));
    }
}
