//! `Metadata`: what the keystore holds beside a value, and its JSON shapes; and
//! `MetadataUpdate`, the `:ttl:N:ttb:N:…` fragment of `update`, `update:meta` and `notify`.
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
//! with seconds). Computing the derived times is the keystore's business.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::atsign::AtSign;
use crate::error::AtError;

pub use time::{civil_date, format_timestamp, parse_timestamp};

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

/// The metadata fragment of `update`, `update:meta` and `notify`: `:ttl:N:ttb:N:ccd:true…`.
///
/// # Format
/// Pairs `:<name>:<value>` with the names of the reference grammar's `META`
/// (docs/protocol.md#metadata-fragment). The reference grammar wants them in the fixed order
/// below; we also accept any order (each name at most once), because the Python SDK emits
/// `sharedKeyEnc` before `isBinary` (docs/clients.md#keys).
/// [`fmt::Display`] always writes the fixed order, so a peer link sends what any reference
/// server accepts.
///
/// ```text
/// :ttl:<-?\d+> :ttb:<-?\d+> :ttr:<-?\d+> :ccd:<true|false> :dataSignature:<v>
/// :sharedKeyStatus:<v> :isBinary:<true|false> :isEncrypted:<true|false> :sharedKeyEnc:<v>
/// :pubKeyCS:<v> :encoding:<v> :encKeyName:<v> :encAlgo:<v> :ivNonce:<v>
/// :skeEncKeyName:<v> :skeEncAlgo:<v>                       (<v> = [^:@\s]+)
/// ```
/// A text value of `null` is kept as the string `null`: the reference resets the field then.
///
/// # Errors
/// AT0003 for a negative ttl or ttb, a ttr below -1, or a number out of range
/// (docs/protocol.md#metadata-fragment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataUpdate {
    pub ttl: Option<i64>,
    pub ttb: Option<i64>,
    pub ttr: Option<i64>,
    pub ccd: Option<bool>,
    pub data_signature: Option<String>,
    pub shared_key_status: Option<String>,
    pub is_binary: Option<bool>,
    pub is_encrypted: Option<bool>,
    pub shared_key_enc: Option<String>,
    pub pub_key_cs: Option<String>,
    pub encoding: Option<String>,
    pub enc_key_name: Option<String>,
    pub enc_algo: Option<String>,
    pub iv_nonce: Option<String>,
    pub ske_enc_key_name: Option<String>,
    pub ske_enc_algo: Option<String>,
}

/// The kinds of value a fragment name takes.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Bool,
    Text,
}

/// Fragment names in the reference order, with their value kinds.
const NAMES: [(&str, Kind); 16] = [
    ("ttl", Kind::Int),
    ("ttb", Kind::Int),
    ("ttr", Kind::Int),
    ("ccd", Kind::Bool),
    ("dataSignature", Kind::Text),
    ("sharedKeyStatus", Kind::Text),
    ("isBinary", Kind::Bool),
    ("isEncrypted", Kind::Bool),
    ("sharedKeyEnc", Kind::Text),
    ("pubKeyCS", Kind::Text),
    ("encoding", Kind::Text),
    ("encKeyName", Kind::Text),
    ("encAlgo", Kind::Text),
    ("ivNonce", Kind::Text),
    ("skeEncKeyName", Kind::Text),
    ("skeEncAlgo", Kind::Text),
];

/// A parsed value of one pair.
enum Parsed {
    Int(i64),
    Bool(bool),
    Text(String),
}

impl MetadataUpdate {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == MetadataUpdate::default()
    }

    /// Reads as many `:<name>:<value>` pairs as start `input`, and returns the fragment and the
    /// rest of the input. Reading stops at the first segment that is not a well-formed pair of
    /// a name not yet seen, so a key that happens to be called `ttl` is left for the caller.
    pub fn parse_prefix(input: &str) -> Result<(MetadataUpdate, &str), AtError> {
        let mut update = MetadataUpdate::default();
        let mut rest = input;
        while let Some((index, value, after)) = next_pair(rest) {
            if update.is_set(index) {
                break;
            }
            let Some(parsed) = parse_value(NAMES[index].1, value)? else {
                break;
            };
            update.set(index, parsed);
            rest = after;
        }
        update.validate()?;
        Ok((update, rest))
    }

    /// The reference's `AtMetadataUtil` checks (docs/protocol.md#metadata-fragment).
    pub fn validate(&self) -> Result<(), AtError> {
        if self.ttl.is_some_and(|v| v < 0) {
            return Err(AtError::syntax(
                "Valid value for TTL should be greater than or equal to 0",
            ));
        }
        if self.ttb.is_some_and(|v| v < 0) {
            return Err(AtError::syntax(
                "Valid value for TTB should be greater than or equal to 0",
            ));
        }
        if self.ttr.is_some_and(|v| v <= -2) {
            return Err(AtError::syntax(
                "Valid value for TTR should be -1 or greater than or equal to 0",
            ));
        }
        // No time that leads past any date from any instant is a time (crate::limits).
        let max = crate::limits::MAX_DATE_MS;
        for (name, value, unit, limit) in [
            ("ttl", self.ttl, "ms", max),
            ("ttb", self.ttb, "ms", max),
            ("ttr", self.ttr, "s", max / 1000),
        ] {
            if let Some(value) = value.filter(|&v| v > limit) {
                return Err(crate::limits::time_out_of_range(name, value, unit));
            }
        }
        Ok(())
    }

    fn is_set(&self, index: usize) -> bool {
        match index {
            0 => self.ttl.is_some(),
            1 => self.ttb.is_some(),
            2 => self.ttr.is_some(),
            3 => self.ccd.is_some(),
            6 => self.is_binary.is_some(),
            7 => self.is_encrypted.is_some(),
            _ => self.text_slot(index).is_some(),
        }
    }

    fn text_slot(&self, index: usize) -> &Option<String> {
        match index {
            4 => &self.data_signature,
            5 => &self.shared_key_status,
            8 => &self.shared_key_enc,
            9 => &self.pub_key_cs,
            10 => &self.encoding,
            11 => &self.enc_key_name,
            12 => &self.enc_algo,
            13 => &self.iv_nonce,
            14 => &self.ske_enc_key_name,
            _ => &self.ske_enc_algo,
        }
    }

    fn set(&mut self, index: usize, value: Parsed) {
        match (index, value) {
            (0, Parsed::Int(v)) => self.ttl = Some(v),
            (1, Parsed::Int(v)) => self.ttb = Some(v),
            (2, Parsed::Int(v)) => self.ttr = Some(v),
            (3, Parsed::Bool(v)) => self.ccd = Some(v),
            (6, Parsed::Bool(v)) => self.is_binary = Some(v),
            (7, Parsed::Bool(v)) => self.is_encrypted = Some(v),
            (4, Parsed::Text(v)) => self.data_signature = Some(v),
            (5, Parsed::Text(v)) => self.shared_key_status = Some(v),
            (8, Parsed::Text(v)) => self.shared_key_enc = Some(v),
            (9, Parsed::Text(v)) => self.pub_key_cs = Some(v),
            (10, Parsed::Text(v)) => self.encoding = Some(v),
            (11, Parsed::Text(v)) => self.enc_key_name = Some(v),
            (12, Parsed::Text(v)) => self.enc_algo = Some(v),
            (13, Parsed::Text(v)) => self.iv_nonce = Some(v),
            (14, Parsed::Text(v)) => self.ske_enc_key_name = Some(v),
            (15, Parsed::Text(v)) => self.ske_enc_algo = Some(v),
            // NAMES pairs each index with its kind, so no other combination reaches here.
            _ => {}
        }
    }
}

/// Splits `:<name>:<value>…` into the name's index, the raw value and the rest, when the
/// name is a fragment name. The value ends at `:`, `@`, whitespace or the end of the input.
fn next_pair(input: &str) -> Option<(usize, &str, &str)> {
    let after_colon = input.strip_prefix(':')?;
    let (name, after_name) = after_colon.split_once(':')?;
    let index = NAMES
        .iter()
        .position(|(known, _)| known.eq_ignore_ascii_case(name))?;
    let end = after_name
        .find(|c: char| c == ':' || c == '@' || c.is_whitespace())
        .unwrap_or(after_name.len());
    let (value, rest) = after_name.split_at(end);
    Some((index, value, rest))
}

/// The value if it fits its kind; `None` if it does not (the pair is then not a pair).
fn parse_value(kind: Kind, raw: &str) -> Result<Option<Parsed>, AtError> {
    if raw.is_empty() {
        return Ok(None);
    }
    Ok(match kind {
        Kind::Int => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(None);
            }
            let n = raw
                .parse()
                .map_err(|_| AtError::syntax(format!("number out of range: {raw}")))?;
            Some(Parsed::Int(n))
        }
        Kind::Bool => parse_bool(raw).map(Parsed::Bool),
        Kind::Text => Some(Parsed::Text(raw.to_string())),
    })
}

/// `true` or `false`, in any case (the reference's regexes are case-insensitive).
pub(crate) fn parse_bool(raw: &str) -> Option<bool> {
    if raw.eq_ignore_ascii_case("true") {
        Some(true)
    } else if raw.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl fmt::Display for MetadataUpdate {
    /// The fragment in the reference order, each pair with its leading `:`; empty if no field is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ints = [(0, self.ttl), (1, self.ttb), (2, self.ttr)];
        for (index, value) in ints {
            if let Some(v) = value {
                write!(f, ":{}:{v}", NAMES[index].0)?;
            }
        }
        for (index, (name, _)) in NAMES.iter().enumerate().skip(3) {
            match index {
                3 | 6 | 7 => {
                    let value = match index {
                        3 => self.ccd,
                        6 => self.is_binary,
                        _ => self.is_encrypted,
                    };
                    if let Some(v) = value {
                        write!(f, ":{name}:{v}")?;
                    }
                }
                _ => {
                    if let Some(v) = self.text_slot(index) {
                        write!(f, ":{name}:{v}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// UTC civil dates by hand (Howard Hinnant's `days_from_civil`), so no date crate is needed.
mod time {
    use super::EpochMillis;

    const MILLIS_PER_DAY: i64 = 86_400_000;

    /// `yyyy-MM-dd HH:mm:ss.mmmZ`, e.g. `2024-10-24 01:35:02.123Z`.
    pub fn format_timestamp(millis: EpochMillis) -> String {
        let days = millis.div_euclid(MILLIS_PER_DAY);
        let in_day = millis.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let (secs, ms) = (in_day / 1000, in_day % 1000);
        if !(0..=9999).contains(&year) {
            return format!(
                "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{ms:03}Z",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            );
        }
        // By hand: this runs for every timestamp of every record the store encodes.
        let mut out = String::with_capacity(24);
        let mut digits = |value: i64, width: u32, then: char| {
            for place in (0..width).rev() {
                let digit = (value / 10_i64.pow(place) % 10) as u8;
                out.push(char::from(b'0' + digit));
            }
            out.push(then);
        };
        digits(year, 4, '-');
        digits(month, 2, '-');
        digits(day, 2, ' ');
        digits(secs / 3600, 2, ':');
        digits(secs / 60 % 60, 2, ':');
        digits(secs % 60, 2, '.');
        digits(ms, 3, 'Z');
        out
    }

    /// Reads `yyyy-MM-dd HH:mm:ss[.fraction][Z]` (a `T` may replace the space), UTC.
    /// Digits of the fraction past milliseconds are dropped, as the reference truncates to ms.
    /// Reads back every instant [`format_timestamp`] writes, also years before 0 or after 9999
    /// (a record written with a far-off expiry still reads); `None` past the range of `i64`.
    pub fn parse_timestamp(text: &str) -> Option<EpochMillis> {
        let text = text.trim();
        let text = text.strip_suffix('Z').unwrap_or(text);
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let year_digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
        if year_digits == 0 || year_digits > 12 || (!negative && year_digits < 4) {
            return None;
        }
        let (year_text, text) = unsigned.split_at(year_digits);
        let year: i64 = year_text.parse().ok()?;
        let year = if negative { -year } else { year };
        // `-MM-dd HH:mm:ss` then the fraction.
        let b = text.as_bytes();
        if b.len() < 15 || b[0] != b'-' || b[3] != b'-' || !matches!(b[6], b' ' | b'T') {
            return None;
        }
        if b[9] != b':' || b[12] != b':' {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = text.get(range)?;
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        let (month, day) = (num(1..3)?, num(4..6)?);
        let (hour, minute, second) = (num(7..9)?, num(10..12)?, num(13..15)?);
        let millis = match text.get(15..)? {
            "" => 0,
            fraction => {
                let digits = fraction.strip_prefix('.')?;
                if digits.is_empty()
                    || digits.len() > 9
                    || !digits.bytes().all(|c| c.is_ascii_digit())
                {
                    return None;
                }
                let ms: String = digits.chars().chain("00".chars()).take(3).collect();
                ms.parse().ok()?
            }
        };
        let valid = (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        if !valid {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let in_day = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
        let millis = i128::from(days) * i128::from(MILLIS_PER_DAY) + i128::from(in_day);
        EpochMillis::try_from(millis).ok()
    }

    fn is_leap(year: i64) -> bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    fn days_in_month(year: i64, month: i64) -> i64 {
        match month {
            2 if is_leap(year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date.
    fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = (month + 9) % 12; // March = 0
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The UTC date (year, month, day) of an instant.
    pub fn civil_date(millis: EpochMillis) -> (i64, i64, i64) {
        civil_from_days(millis.div_euclid(MILLIS_PER_DAY))
    }

    /// The date of a day count since 1970-01-01.
    fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn known_instants_format_as_dart_does() {
            assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000Z");
            assert_eq!(
                format_timestamp(1_729_733_702_123),
                "2024-10-24 01:35:02.123Z"
            );
            assert_eq!(
                format_timestamp(951_782_400_000),
                "2000-02-29 00:00:00.000Z"
            );
            assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999Z");
        }

        #[test]
        fn parse_reads_back_what_format_writes() {
            let mut t: i64 = -86_400_000 * 800;
            while t < 253_402_300_799_999 {
                assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t), "{t}");
                t += 7_777_777_777;
            }
            assert_eq!(
                parse_timestamp("2024-10-24T01:35:02.123456Z"),
                Some(1_729_733_702_123)
            );
            assert_eq!(
                parse_timestamp("2024-10-24 01:35:02"),
                Some(1_729_733_702_000)
            );
            // Far-off instants (years past 9999 or before 0) read back too.
            for t in [
                i64::MAX,
                i64::MIN,
                8_640_000_000_000_000,
                -62_167_219_200_001,
                253_402_300_800_000,
            ] {
                assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t), "{t}");
            }
        }

        #[test]
        fn impossible_dates_are_refused() {
            for bad in [
                "2023-02-29 00:00:00.000Z",
                "2024-13-01 00:00:00Z",
                "2024-10-24 24:00:00Z",
                "2024-10-24",
                "",
                "null",
                "2024-10-24 01:35:02.Z",
                "２０２４-10-24 01:35:02Z",
                "24-10-24 01:35:02Z",
                "-2024-10-24",
                "9999999999999-01-01 00:00:00Z",
            ] {
                assert_eq!(parse_timestamp(bad), None, "{bad}");
            }
        }
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
    fn fragment_reads_pairs_and_leaves_the_rest() {
        let (update, rest) =
            MetadataUpdate::parse_prefix(":ttl:600000:ttr:-1:ccd:true:isBinary:true:phone@bob v")
                .unwrap();
        assert_eq!(update.ttl, Some(600000));
        assert_eq!(update.ttr, Some(-1));
        assert_eq!(update.ccd, Some(true));
        assert_eq!(update.is_binary, Some(true));
        assert_eq!(rest, ":phone@bob v");
        assert_eq!(
            update.to_string(),
            ":ttl:600000:ttr:-1:ccd:true:isBinary:true"
        );
    }

    #[test]
    fn fragment_accepts_any_order_but_renders_the_reference_order() {
        let (update, rest) =
            MetadataUpdate::parse_prefix(":ivNonce:abc==:sharedKeyEnc:x:isEncrypted:true:@bob:k")
                .unwrap();
        assert_eq!(rest, ":@bob:k");
        assert_eq!(
            update.to_string(),
            ":isEncrypted:true:sharedKeyEnc:x:ivNonce:abc=="
        );
    }

    #[test]
    fn fragment_stops_at_a_key_named_like_a_field() {
        let (update, rest) = MetadataUpdate::parse_prefix(":ttl@alice 5").unwrap();
        assert!(update.is_empty());
        assert_eq!(rest, ":ttl@alice 5");
        let (update, rest) = MetadataUpdate::parse_prefix(":ttl:5:ttl:6:k v").unwrap();
        assert_eq!(update.ttl, Some(5));
        assert_eq!(rest, ":ttl:6:k v");
    }

    #[test]
    fn negative_ttl_or_ttb_and_ttr_below_minus_one_are_invalid_syntax() {
        for bad in [":ttl:-1:k v", ":ttb:-5:k v", ":ttr:-2:k v"] {
            let err = MetadataUpdate::parse_prefix(bad).unwrap_err();
            assert_eq!(err.code(), crate::error::ErrorCode::InvalidSyntax, "{bad}");
        }
        let err = MetadataUpdate::parse_prefix(":ttl:-1:k v").unwrap_err();
        assert_eq!(
            err.message(),
            "Valid value for TTL should be greater than or equal to 0"
        );
        assert!(MetadataUpdate::parse_prefix(":ttl:99999999999999999999999:k v").is_err());
        // A number, but no time: past any date from any instant.
        let err = MetadataUpdate::parse_prefix(":ttl:9223372036854775807:k v").unwrap_err();
        assert_eq!(
            err.message(),
            "ttl of 9223372036854775807 ms is out of range"
        );
        let err = MetadataUpdate::parse_prefix(":ttr:8640000000000001:k v").unwrap_err();
        assert_eq!(err.message(), "ttr of 8640000000000001 s is out of range");
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
