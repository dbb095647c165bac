//! Subresource Integrity metadata: the algorithms, `alg-base64` tokens, matching by the
//! strongest algorithm as the SRI specification says, and hashing in one streaming pass.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::digest::{Context, SHA256, SHA384, SHA512};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::support::truncate;

/// Bytes read per `read` call while hashing.
pub const HASH_BUFFER: usize = 128 * 1024;

/// A hash algorithm of SRI, ordered by strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Alg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Alg {
    /// The algorithm of an SRI prefix such as `sha384`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The SRI prefix.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// Digests of one content, by algorithm.
pub type Digests = BTreeMap<Alg, Vec<u8>>;

/// Several hashes fed from one pass over the content.
///
/// The digests are aws-lc-rs's (the TLS stack's), the fastest in the dependency tree: the `sha2`
/// crate needs 11 % more CPU time per byte, and `openssl dgst` 8 % less, with an AVX2 code path
/// that aws-lc builds out (`scripts/bench-sri.sh`, `docs/benchmarks.md`).
#[derive(Default)]
pub struct MultiHasher {
    sha256: Option<Context>,
    sha384: Option<Context>,
    sha512: Option<Context>,
}

impl MultiHasher {
    /// A hasher for each of `algs`.
    #[must_use]
    pub fn new(algs: &[Alg]) -> Self {
        let mut h = Self::default();
        for a in algs {
            match a {
                Alg::Sha256 => h.sha256 = Some(Context::new(&SHA256)),
                Alg::Sha384 => h.sha384 = Some(Context::new(&SHA384)),
                Alg::Sha512 => h.sha512 = Some(Context::new(&SHA512)),
            }
        }
        h
    }

    /// Feeds bytes to every hash.
    pub fn update(&mut self, data: &[u8]) {
        for h in [&mut self.sha256, &mut self.sha384, &mut self.sha512]
            .into_iter()
            .flatten()
        {
            h.update(data);
        }
    }

    /// The digests.
    #[must_use]
    pub fn finish(self) -> Digests {
        let mut d = Digests::new();
        for (alg, h) in [
            (Alg::Sha256, self.sha256),
            (Alg::Sha384, self.sha384),
            (Alg::Sha512, self.sha512),
        ] {
            if let Some(h) = h {
                d.insert(alg, h.finish().as_ref().to_vec());
            }
        }
        d
    }
}

/// Hashes a reader to its end with a [`HASH_BUFFER`]-sized buffer, checking `cancel` between
/// reads; returns the digests and the bytes read.
///
/// # Errors
/// A read error, or `Interrupted` when `cancel` was set.
pub fn hash_reader(
    r: &mut impl Read,
    algs: &[Alg],
    cancel: &AtomicBool,
) -> io::Result<(Digests, u64)> {
    let mut hasher = MultiHasher::new(algs);
    let mut buf = vec![0u8; HASH_BUFFER];
    let mut total = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finish(), total))
}

/// The SRI form `alg-base64` of a digest.
#[must_use]
pub fn sri_token(alg: Alg, digest: &[u8]) -> String {
    format!("{}-{}", alg.name(), STANDARD.encode(digest))
}

/// Parsed integrity metadata: one or more `alg-digest` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    pub(super) tokens: Vec<(Alg, Vec<u8>)>,
}

impl Integrity {
    /// Parses whitespace-separated tokens such as `sha384-… sha512-…`; `?options` are ignored.
    ///
    /// # Errors
    /// An unknown algorithm, a digest that is not base64 or has the wrong length, or no token.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for token in text.split_ascii_whitespace() {
            tokens.push(parse_token(token)?);
        }
        if tokens.is_empty() {
            return Err("no integrity token".into());
        }
        Ok(Self { tokens })
    }

    /// The strongest algorithm; only its tokens decide a match.
    #[must_use]
    pub fn strongest(&self) -> Alg {
        self.tokens
            .iter()
            .map(|(a, _)| *a)
            .max()
            .unwrap_or(Alg::Sha256)
    }

    /// Whether digests of a content match: any token of the strongest algorithm equals the
    /// content's digest of that algorithm.
    #[must_use]
    pub fn matches(&self, digests: &Digests) -> bool {
        let alg = self.strongest();
        let Some(actual) = digests.get(&alg) else {
            return false;
        };
        self.tokens
            .iter()
            .any(|(a, d)| *a == alg && d.as_slice() == actual.as_slice())
    }

    /// Whether two metadata share a token.
    #[must_use]
    pub fn shares_token(&self, other: &Integrity) -> bool {
        self.tokens.iter().any(|t| other.tokens.contains(t))
    }
}

fn parse_token(token: &str) -> Result<(Alg, Vec<u8>), String> {
    let Some((alg, rest)) = token.split_once('-') else {
        return Err(format!("{:?} is not of the form alg-digest", short(token)));
    };
    let alg = Alg::parse(alg)
        .ok_or_else(|| format!("unknown algorithm {alg:?} (expected sha256, sha384 or sha512)"))?;
    let b64 = rest.split_once('?').map_or(rest, |(d, _)| d);
    // The SRI grammar allows base64 and base64url, with or without padding.
    let digest = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(b64).ok())
        .ok_or_else(|| format!("{} digest {:?} is not base64", alg.name(), short(b64)))?;
    if digest.len() != alg.len() {
        return Err(format!(
            "{} digest has {} bytes, expected {}",
            alg.name(),
            digest.len(),
            alg.len()
        ));
    }
    Ok((alg, digest))
}

fn short(s: &str) -> String {
    truncate(s, 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests_of(data: &[u8]) -> Digests {
        let mut h = MultiHasher::new(&[Alg::Sha256, Alg::Sha384, Alg::Sha512]);
        h.update(data);
        h.finish()
    }

    #[test]
    fn strongest_algorithm_decides() {
        let d = digests_of(b"alert(1)");
        let good384 = sri_token(Alg::Sha384, &d[&Alg::Sha384]);
        let good256 = sri_token(Alg::Sha256, &d[&Alg::Sha256]);
        let other = digests_of(b"other");
        let bad512 = sri_token(Alg::Sha512, &other[&Alg::Sha512]);
        let bad384 = sri_token(Alg::Sha384, &other[&Alg::Sha384]);
        assert!(Integrity::parse(&good384).unwrap().matches(&d));
        // A good weaker token does not save a bad stronger one.
        let i = Integrity::parse(&format!("{good384} {bad512}")).unwrap();
        assert!(!i.matches(&d));
        // Any token of the strongest algorithm may match.
        let i = Integrity::parse(&format!("{bad384} {good256} {good384}")).unwrap();
        assert!(i.matches(&d));
        assert_eq!(i.strongest(), Alg::Sha384);
    }
}
