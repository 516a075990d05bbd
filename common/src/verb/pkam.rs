//! `pkam`: the owner's public-key authentication (legacy and APKAM).
//!
//! # Format
//! ```text
//! pkam:[signingAlgo:<rsa2048|ecc_secp256r1>:][hashingAlgo:<sha256|sha512>:][enrollmentId:<id>:]<signature>
//! ^pkam:(signingAlgo:(?<signingAlgo>ecc_secp256r1|rsa2048):)?(hashingAlgo:(?<hashingAlgo>sha256|sha512):)?
//!      (enrollmentId:(?<enrollmentId>.+):)?(?<signature>.+$)
//! ```
//! The enrollment id runs to the last `:` (the regex's `.+` is greedy); the signature is
//! base64 and holds no `:`.

use std::fmt;

use super::{first_match, rest_of_line, usage_error};
use crate::error::AtError;
use crate::key::strip_prefix_ci;

const USAGE: &str = "pkam:<signature>";

keyword_enum!(
    /// The signature scheme of a PKAM key.
    SigningAlgo { Rsa2048 => "rsa2048", EccSecp256r1 => "ecc_secp256r1" }
);
keyword_enum!(
    /// The digest a PKAM signature is made over.
    HashingAlgo { Sha256 => "sha256", Sha512 => "sha512" }
);

/// `pkam:<signature>` and its optional prefixes.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkam {
    pub signing_algo: Option<SigningAlgo>,
    pub hashing_algo: Option<HashingAlgo>,
    /// The APKAM enrollment whose key signed.
    pub enrollment_id: Option<String>,
    /// Base64 signature of the challenge.
    pub signature: String,
}

impl Pkam {
    /// Parses the text after `pkam:`.
    pub fn parse(rest: &str) -> Result<Pkam, AtError> {
        first_match(3, |on| {
            let mut s = rest;
            let mut signing_algo = None;
            if on(0) {
                let (algo, after) = SigningAlgo::strip(strip_prefix_ci(s, "signingAlgo:")?)?;
                signing_algo = Some(algo);
                s = after.strip_prefix(':')?;
            }
            let mut hashing_algo = None;
            if on(1) {
                let (algo, after) = HashingAlgo::strip(strip_prefix_ci(s, "hashingAlgo:")?)?;
                hashing_algo = Some(algo);
                s = after.strip_prefix(':')?;
            }
            let mut enrollment_id = None;
            if on(2) {
                let body = strip_prefix_ci(s, "enrollmentId:")?;
                let (id, signature) = body.rsplit_once(':')?;
                rest_of_line(id)?;
                enrollment_id = Some(id.to_string());
                s = signature;
            }
            let signature = rest_of_line(s)?.to_string();
            Some(Pkam {
                signing_algo,
                hashing_algo,
                enrollment_id,
                signature,
            })
        })
        .ok_or_else(|| usage_error(USAGE))
    }
}

/// The signature is a credential: keep it out of logs.
impl fmt::Debug for Pkam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkam")
            .field("signing_algo", &self.signing_algo)
            .field("hashing_algo", &self.hashing_algo)
            .field("enrollment_id", &self.enrollment_id)
            .field("signature", &"MASKED")
            .finish()
    }
}

impl fmt::Display for Pkam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkam:")?;
        if let Some(algo) = self.signing_algo {
            write!(f, "signingAlgo:{algo}:")?;
        }
        if let Some(algo) = self.hashing_algo {
            write!(f, "hashingAlgo:{algo}:")?;
        }
        if let Some(id) = &self.enrollment_id {
            write!(f, "enrollmentId:{id}:")?;
        }
        f.write_str(&self.signature)
    }
}
