//! What the APKAM device tests share: a device's `pkam` signature made here with `ring` from a
//! PKCS#8 test key (independently of the server's code), and a monitor reader that takes one
//! notification line at a time, past the stats notifications (`id` `-1`) every monitor gets
//! after writes and every 15 s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::client::{line_without_time, Client};

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RSASSA-PKCS1-v1_5 SHA-256 of `challenge` (the `from` reply without `data:`) under the RSA key
/// `pkcs8_base64` (base64 of PKCS#8 DER), base64 with padding: what an SDK sends at
/// `pkam:[enrollmentId:<id>:]<signature>` (docs/authentication.md#pkam).
pub fn pkam_signature(pkcs8_base64: &str, challenge: &str) -> String {
    let der = base64_decode(pkcs8_base64.trim());
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("an RSA PKCS#8 test key");
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        challenge.as_bytes(),
        &mut signature,
    )
    .expect("signed");
    base64_encode(&signature)
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padding optional.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let digit = B64.iter().position(|b| *b == c).expect("base64");
        n = (n << 6) | digit as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    out
}

/// A monitor line with its notification id (a uuid, as the server makes them) replaced by
/// `<id>` and its epochMillis by `<time>`, to compare the rest exactly.
pub fn without_id_and_time(line: &str) -> String {
    let (id, rest) = line
        .strip_prefix("notification: {\"id\":\"")
        .and_then(|rest| rest.split_once('"'))
        .unwrap_or_else(|| panic!("not a notification: {line:?}"));
    assert!(is_uuid(id), "not a uuid id: {line:?}");
    line_without_time(&format!("notification: {{\"id\":\"<id>\"{rest}"))
}

/// Whether `id` is a uuid in its usual text form (8-4-4-4-12 hex digits).
pub fn is_uuid(id: &str) -> bool {
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    groups == [8, 4, 4, 4, 12] && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A monitor connection read line by line.
pub struct MonitorLines {
    pub client: Client,
    lines: VecDeque<String>,
}

/// Whether `line` is the stats notification (`notification: {"id":"-1",…`).
pub fn is_stats(line: &str) -> bool {
    line.starts_with("notification: {\"id\":\"-1\",")
}

impl MonitorLines {
    pub fn new(client: Client) -> MonitorLines {
        MonitorLines {
            client,
            lines: VecDeque::new(),
        }
    }

    /// The next whole line (with its `\n`) within `within`, or what came instead.
    pub fn try_next(&mut self, within: Duration) -> Result<String, String> {
        if let Some(line) = self.lines.pop_front() {
            return Ok(line);
        }
        let got = self.client.try_read_until(b"\n", within)?;
        self.lines
            .extend(got.split_inclusive('\n').map(str::to_string));
        Ok(self.lines.pop_front().expect("at least one line"))
    }

    /// The next line that is not a stats notification, within `within` in all.
    pub fn next_notification(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .try_next(left)
                .unwrap_or_else(|e| panic!("no notification within {within:?}: {e}"));
            if !is_stats(&line) {
                return line;
            }
        }
    }

    /// Asserts that the server closes the monitor within `within`, having sent nothing but
    /// whole notification lines meanwhile (a stats notification may come at any time); returns
    /// those lines.
    pub fn expect_closed(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got: Vec<String> = self.lines.drain(..).collect();
        let mut rest = String::new();
        while !self.client.is_closed() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = self.client.read_for(left.min(Duration::from_millis(100)));
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            self.client.is_closed(),
            "the monitor was not closed within {within:?}; it got {got:?} {rest:?}"
        );
        got.extend(rest.split_inclusive('\n').map(str::to_string));
        for line in &got {
            assert!(
                line.starts_with("notification: {") && line.ends_with("}\n"),
                "a monitor closed with {line:?} among {got:?}"
            );
        }
        got
    }
}
