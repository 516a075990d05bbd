//! `Metadata`: what the keystore holds beside a value, and its JSON shapes. The update
//! fragment is [`update`], how a write stamps it is [`stamp`], the calendar is [`time`].
//!
//! # Format
//! JSON field names and order are the reference's `AtMetaData.toJson`
//! (docs/storage.md#metadata-json): `createdBy, updatedBy, createdAt, updatedAt, availableAt,
//! expiresAt, refreshAt, status, version, ttl, ttb, ttr, ccd, isBinary, isEncrypted,
//! dataSignature, sharedKeyEnc, pubKeyCS, encoding, encKeyName, encAlgo, ivNonce, skeEncKeyName,
//! skeEncAlgo`, then `sharedKeyStatus` (which the update grammar accepts but the reference JSON
//! leaves out). Timestamps are held as epoch milliseconds and written `yyyy-MM-dd HH:mm:ss.mmmZ`
//! (UTC), as Dart's `DateTime.toUtc().toString()` does. Three renderings exist:
//! [`Metadata::to_json`] (nulls kept), [`Metadata::to_json_without_nulls`] (lookup/llookup meta)
//! and [`Metadata::to_sync_json`] (every value a string, nulls left out: sync entries).
//!
//! Units: ttl and ttb are milliseconds; ttr is kept as given (the reference computes refreshAt
//! with seconds). The derived times are computed when a write stamps the metadata ([`stamp`]).

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::atsign::AtSign;

mod stamp;
mod time;
mod update;

pub use time::{civil_date, format_timestamp, parse_timestamp};
pub(crate) use update::parse_bool;
pub use update::MetadataUpdate;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type EpochMillis = i64;

/// Now, as [`EpochMillis`] (0 for a clock set before 1970).
pub fn now_ms() -> EpochMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as EpochMillis)
}

/// The metadata of one key. Every field is optional, as in the reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Metadata {
    #[serde(deserialize_with = "de_atsign")]
    pub created_by: Option<AtSign>,
    #[serde(deserialize_with = "de_atsign")]
    pub updated_by: Option<AtSign>,
    #[serde(deserialize_with = "de_time")]
    pub created_at: Option<EpochMillis>,
    #[serde(deserialize_with = "de_time")]
    pub updated_at: Option<EpochMillis>,
    /// When the key becomes visible: creation + ttb.
    #[serde(deserialize_with = "de_time")]
    pub available_at: Option<EpochMillis>,
    /// When the key disappears: creation + ttl.
    #[serde(deserialize_with = "de_time")]
    pub expires_at: Option<EpochMillis>,
    /// When a cached copy must be fetched again.
    #[serde(deserialize_with = "de_time")]
    pub refresh_at: Option<EpochMillis>,
    /// Always `"active"` in the reference.
    #[serde(deserialize_with = "de_string")]
    pub status: Option<String>,
    /// 0 on create, +1 on each update.
    #[serde(deserialize_with = "de_int")]
    pub version: Option<i64>,
    /// Time to live, ms.
    #[serde(deserialize_with = "de_int")]
    pub ttl: Option<i64>,
    /// Time to birth, ms.
    #[serde(deserialize_with = "de_int")]
    pub ttb: Option<i64>,
    /// Time to refresh; -1 = cache forever, 0 or absent = do not cache.
    #[serde(deserialize_with = "de_int")]
    pub ttr: Option<i64>,
    /// Cascade delete: remove cached copies when the original goes.
    #[serde(deserialize_with = "de_bool")]
    pub ccd: Option<bool>,
    #[serde(deserialize_with = "de_bool")]
    pub is_binary: Option<bool>,
    #[serde(deserialize_with = "de_bool")]
    pub is_encrypted: Option<bool>,
    #[serde(deserialize_with = "de_string")]
    pub data_signature: Option<String>,
    #[serde(deserialize_with = "de_string")]
    pub shared_key_enc: Option<String>,
    #[serde(rename = "pubKeyCS", deserialize_with = "de_string")]
    pub pub_key_cs: Option<String>,
    #[serde(deserialize_with = "de_string")]
    pub encoding: Option<String>,
    #[serde(deserialize_with = "de_string")]
    pub enc_key_name: Option<String>,
    #[serde(deserialize_with = "de_string")]
    pub enc_algo: Option<String>,
    /// The AES IV; clients need it echoed exactly (docs/clients.md#keys).
    #[serde(deserialize_with = "de_string")]
    pub iv_nonce: Option<String>,
    #[serde(deserialize_with = "de_string")]
    pub ske_enc_key_name: Option<String>,
    #[serde(deserialize_with = "de_string")]
    pub ske_enc_algo: Option<String>,
    #[serde(deserialize_with = "de_string")]
    pub shared_key_status: Option<String>,
}

/// One JSON value of a metadata field, before the rendering decides nulls and strings.
enum Field<'a> {
    Text(Option<&'a str>),
    Time(Option<EpochMillis>),
    Int(Option<i64>),
    Bool(Option<bool>),
}

impl Field<'_> {
    fn is_null(&self) -> bool {
        match self {
            Field::Text(v) => v.is_none(),
            Field::Time(v) | Field::Int(v) => v.is_none(),
            Field::Bool(v) => v.is_none(),
        }
    }

    /// Serializes the field's value; with `all_strings`, numbers and booleans as text.
    fn rendered(&self, all_strings: bool) -> Rendered<'_> {
        Rendered(self, all_strings)
    }
}

/// A field's JSON value, written straight to the serializer (no `serde_json::Value` built:
/// records are encoded on the store's writer thread, once per update).
struct Rendered<'a>(&'a Field<'a>, bool);

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Rendered(field, all_strings) = *self;
        match field {
            Field::Text(Some(s)) => serializer.serialize_str(s),
            Field::Time(Some(t)) => serializer.serialize_str(&format_timestamp(*t)),
            Field::Int(Some(n)) if all_strings => serializer.collect_str(n),
            Field::Int(Some(n)) => serializer.serialize_i64(*n),
            Field::Bool(Some(b)) if all_strings => serializer.collect_str(b),
            Field::Bool(Some(b)) => serializer.serialize_bool(*b),
            _ => serializer.serialize_unit(),
        }
    }
}

/// How a rendering treats nulls and non-string values.
#[derive(Clone, Copy)]
enum Shape {
    Full,
    WithoutNulls,
    Sync,
}

impl Metadata {
    /// The fields in the reference's `toJson` order.
    fn fields(&self) -> [(&'static str, Field<'_>); 25] {
        [
            (
                "createdBy",
                Field::Text(self.created_by.as_ref().map(AtSign::as_str)),
            ),
            (
                "updatedBy",
                Field::Text(self.updated_by.as_ref().map(AtSign::as_str)),
            ),
            ("createdAt", Field::Time(self.created_at)),
            ("updatedAt", Field::Time(self.updated_at)),
            ("availableAt", Field::Time(self.available_at)),
            ("expiresAt", Field::Time(self.expires_at)),
            ("refreshAt", Field::Time(self.refresh_at)),
            ("status", Field::Text(self.status.as_deref())),
            ("version", Field::Int(self.version)),
            ("ttl", Field::Int(self.ttl)),
            ("ttb", Field::Int(self.ttb)),
            ("ttr", Field::Int(self.ttr)),
            ("ccd", Field::Bool(self.ccd)),
            ("isBinary", Field::Bool(self.is_binary)),
            ("isEncrypted", Field::Bool(self.is_encrypted)),
            ("dataSignature", Field::Text(self.data_signature.as_deref())),
            ("sharedKeyEnc", Field::Text(self.shared_key_enc.as_deref())),
            ("pubKeyCS", Field::Text(self.pub_key_cs.as_deref())),
            ("encoding", Field::Text(self.encoding.as_deref())),
            ("encKeyName", Field::Text(self.enc_key_name.as_deref())),
            ("encAlgo", Field::Text(self.enc_algo.as_deref())),
            ("ivNonce", Field::Text(self.iv_nonce.as_deref())),
            (
                "skeEncKeyName",
                Field::Text(self.ske_enc_key_name.as_deref()),
            ),
            ("skeEncAlgo", Field::Text(self.ske_enc_algo.as_deref())),
            (
                "sharedKeyStatus",
                Field::Text(self.shared_key_status.as_deref()),
            ),
        ]
    }

    fn write<S: Serializer>(&self, shape: Shape, serializer: S) -> Result<S::Ok, S::Error> {
        let skip_nulls = !matches!(shape, Shape::Full);
        let all_strings = matches!(shape, Shape::Sync);
        let fields = self.fields();
        let mut map = serializer.serialize_map(None)?;
        for (name, field) in &fields {
            // sharedKeyStatus is not in the reference's toJson; show it only when set.
            if (skip_nulls || *name == "sharedKeyStatus") && field.is_null() {
                continue;
            }
            map.serialize_entry(name, &field.rendered(all_strings))?;
        }
        map.end()
    }

    /// Every field, nulls included, in the reference's order.
    pub fn to_json(&self) -> String {
        render(self, Shape::Full)
    }

    /// Null fields left out, as the lookup/llookup handlers send `meta` and `all` results.
    pub fn to_json_without_nulls(&self) -> String {
        render(self, Shape::WithoutNulls)
    }

    /// Every present value as a string and nulls left out, as in `sync` entries
    /// (docs/storage.md#sync).
    pub fn to_sync_json(&self) -> String {
        render(self, Shape::Sync)
    }

    /// `to_json_without_nulls` as a value to serialize inside a larger document (a stored
    /// record), in the same order.
    pub fn without_nulls(&self) -> impl Serialize + '_ {
        WithoutNulls(self)
    }

    /// Applies a fragment: fields it names replace ours, the others are kept, as an `update`
    /// of an existing key does in the reference.
    pub fn apply(&mut self, update: &MetadataUpdate) {
        fn set<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
            if value.is_some() {
                target.clone_from(value);
            }
        }
        set(&mut self.ttl, &update.ttl);
        set(&mut self.ttb, &update.ttb);
        set(&mut self.ttr, &update.ttr);
        set(&mut self.ccd, &update.ccd);
        set(&mut self.data_signature, &update.data_signature);
        set(&mut self.shared_key_status, &update.shared_key_status);
        set(&mut self.is_binary, &update.is_binary);
        set(&mut self.is_encrypted, &update.is_encrypted);
        set(&mut self.shared_key_enc, &update.shared_key_enc);
        set(&mut self.pub_key_cs, &update.pub_key_cs);
        set(&mut self.encoding, &update.encoding);
        set(&mut self.enc_key_name, &update.enc_key_name);
        set(&mut self.enc_algo, &update.enc_algo);
        set(&mut self.iv_nonce, &update.iv_nonce);
        set(&mut self.ske_enc_key_name, &update.ske_enc_key_name);
        set(&mut self.ske_enc_algo, &update.ske_enc_algo);
    }
}

fn render(metadata: &Metadata, shape: Shape) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    // Writing into a Vec with string keys cannot fail; an empty object is the safe fallback.
    if metadata.write(shape, &mut serializer).is_err() {
        return "{}".to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| "{}".to_string())
}

/// See [`Metadata::without_nulls`].
struct WithoutNulls<'a>(&'a Metadata);

impl Serialize for WithoutNulls<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.write(Shape::WithoutNulls, serializer)
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.write(Shape::Full, serializer)
    }
}

// Deserializers that accept what Dart peers send: `null`, the string `"null"`, numbers as
// strings and booleans as strings (AtMetaData.fromJson is that lenient).

fn de_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(value.filter(|v| !v.is_null() && v.as_str() != Some("null")))
}

fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match de_value(d)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Ok(Some(other.to_string())),
    }
}

fn de_atsign<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AtSign>, D::Error> {
    match de_string(d)? {
        None => Ok(None),
        Some(s) => AtSign::parse(&s).map(Some).map_err(de::Error::custom),
    }
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<EpochMillis>, D::Error> {
    match de_value(d)? {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| de::Error::custom("timestamp out of range")),
        Some(Value::String(s)) => parse_timestamp(&s)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("not a timestamp: {s}"))),
        Some(other) => Err(de::Error::custom(format!("not a timestamp: {other}"))),
    }
}

fn de_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match de_value(d)? {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| de::Error::custom("integer out of range")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("not an integer: {s}"))),
        Some(other) => Err(de::Error::custom(format!("not an integer: {other}"))),
    }
}

fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match de_value(d)? {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(de::Error::custom(format!("not a boolean: {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            created_by: Some(AtSign::parse("@alice").unwrap()),
            updated_by: Some(AtSign::parse("@alice").unwrap()),
            created_at: parse_timestamp("2024-10-24 01:35:02.123Z"),
            updated_at: parse_timestamp("2024-10-24 01:35:02.123Z"),
            status: Some("active".into()),
            version: Some(0),
            ttr: Some(-1),
            ccd: Some(false),
            is_encrypted: Some(true),
            shared_key_enc: Some("abc".into()),
            pub_key_cs: Some("def".into()),
            ..Metadata::default()
        }
    }

    #[test]
    fn without_nulls_matches_the_reference_bytes() {
        assert_eq!(
            sample().to_json_without_nulls(),
            r#"{"createdBy":"@alice","updatedBy":"@alice","createdAt":"2024-10-24 01:35:02.123Z","updatedAt":"2024-10-24 01:35:02.123Z","status":"active","version":0,"ttr":-1,"ccd":false,"isEncrypted":true,"sharedKeyEnc":"abc","pubKeyCS":"def"}"#
        );
    }

    #[test]
    fn full_json_keeps_nulls_in_reference_order() {
        let json = Metadata::default().to_json();
        assert_eq!(
            json,
            r#"{"createdBy":null,"updatedBy":null,"createdAt":null,"updatedAt":null,"availableAt":null,"expiresAt":null,"refreshAt":null,"status":null,"version":null,"ttl":null,"ttb":null,"ttr":null,"ccd":null,"isBinary":null,"isEncrypted":null,"dataSignature":null,"sharedKeyEnc":null,"pubKeyCS":null,"encoding":null,"encKeyName":null,"encAlgo":null,"ivNonce":null,"skeEncKeyName":null,"skeEncAlgo":null}"#
        );
    }

    #[test]
    fn sync_json_writes_every_value_as_a_string() {
        assert_eq!(
            sample().to_sync_json(),
            r#"{"createdBy":"@alice","updatedBy":"@alice","createdAt":"2024-10-24 01:35:02.123Z","updatedAt":"2024-10-24 01:35:02.123Z","status":"active","version":"0","ttr":"-1","ccd":"false","isEncrypted":"true","sharedKeyEnc":"abc","pubKeyCS":"def"}"#
        );
    }

    #[test]
    fn json_reads_back_from_every_rendering_and_from_lenient_dart_values() {
        let meta = sample();
        for json in [
            meta.to_json(),
            meta.to_json_without_nulls(),
            meta.to_sync_json(),
        ] {
            let back: Metadata = serde_json::from_str(&json).expect(&json);
            assert_eq!(back, meta, "{json}");
        }
        let dart = r#"{"createdAt":"2020-10-21 09:46:48.982Z","availableAt":"null","ttl":null,"ttr":"10000","ccd":"false"}"#;
        let back: Metadata = serde_json::from_str(dart).unwrap();
        assert_eq!(back.ttr, Some(10000));
        assert_eq!(back.ccd, Some(false));
        assert_eq!(back.available_at, None);
    }

    #[test]
    fn apply_replaces_named_fields_only() {
        let mut meta = sample();
        let (update, _) = MetadataUpdate::parse_prefix(":ttl:5:ivNonce:n").unwrap();
        meta.apply(&update);
        assert_eq!(meta.ttl, Some(5));
        assert_eq!(meta.iv_nonce.as_deref(), Some("n"));
        assert_eq!(meta.ttr, Some(-1));
    }
}
