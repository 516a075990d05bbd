//! `MetadataUpdate`: the `:ttl:N:ttb:N:…` fragment of `update`, `update:meta` and `notify`.

use std::fmt;

use crate::error::AtError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
