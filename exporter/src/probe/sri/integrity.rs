//! Subresource Integrity metadata: the algorithms, `alg-base64` tokens, matching by the
//! strongest algorithm as the SRI specification says (unknown algorithms and options ignored,
//! any digest of the strongest algorithm passes), and hashing in one streaming pass.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::digest::{Context, SHA256, SHA384, SHA512};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

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

/// Integrity metadata as the SRI specification reads it ("parse metadata"): the tokens of
/// known algorithms, each with its digest, or `None` where the value is not the base64 (or
/// base64url, with or without padding) of a digest of the algorithm's length, which no content
/// matches. Tokens of unknown algorithms, and anything that is not `alg-value`, are ignored;
/// `?options` are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    pub(super) tokens: Vec<(Alg, Option<Vec<u8>>)>,
    /// Items ignored: unknown algorithms, or not of the form `alg-value`.
    pub(super) ignored: usize,
}

impl Integrity {
    /// Parses whitespace-separated metadata such as `sha384-… sha512-…?ct=x`. Never fails: what
    /// the specification ignores is counted in [`Integrity::ignored`].
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut tokens = Vec::new();
        let mut ignored = 0;
        for item in text.split_ascii_whitespace() {
            match parse_token(item) {
                Some(t) => tokens.push(t),
                None => ignored += 1,
            }
        }
        Self { tokens, ignored }
    }

    /// Items the specification ignores (unknown algorithms, not `alg-value`).
    #[must_use]
    pub fn ignored(&self) -> usize {
        self.ignored
    }

    /// The strongest algorithm present; only its tokens decide a match. SHA-256 when there is
    /// no token (then nothing is compared; see [`Integrity::matches`]).
    #[must_use]
    pub fn strongest(&self) -> Alg {
        self.tokens
            .iter()
            .map(|(a, _)| *a)
            .max()
            .unwrap_or(Alg::Sha256)
    }

    /// Whether a content with these digests passes, as "do bytes match metadataList" says:
    /// without a token of a known algorithm everything passes; otherwise any token of the
    /// strongest algorithm must equal the content's digest of that algorithm.
    #[must_use]
    pub fn matches(&self, digests: &Digests) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let alg = self.strongest();
        let Some(actual) = digests.get(&alg) else {
            return false;
        };
        self.tokens
            .iter()
            .any(|(a, d)| *a == alg && d.as_deref() == Some(actual.as_slice()))
    }

    /// The algorithm to check a content with, or why the metadata cannot tell a good content
    /// from a bad one: no token of a known algorithm (a browser loads anything), or no token
    /// of the strongest algorithm whose digest is well formed (a browser loads nothing).
    ///
    /// # Errors
    /// The reason, in words, when nothing can be checked.
    pub fn checkable(&self) -> Result<Alg, String> {
        if self.tokens.is_empty() {
            return Err(
                "no digest of sha256, sha384 or sha512 (a browser would load any content)".into(),
            );
        }
        let alg = self.strongest();
        if self.tokens.iter().any(|(a, d)| *a == alg && d.is_some()) {
            Ok(alg)
        } else {
            Err(format!(
                "no {} digest is the base64 of {} bytes (a browser would load no content)",
                alg.name(),
                alg.len()
            ))
        }
    }

    /// Whether two metadata share a well-formed token.
    #[must_use]
    pub fn shares_token(&self, other: &Integrity) -> bool {
        self.tokens
            .iter()
            .any(|(a, d)| d.is_some() && other.tokens.iter().any(|(b, e)| a == b && d == e))
    }
}

/// One `alg-value?options` item: its algorithm and digest (`None` when the value is not a
/// digest of the algorithm), or `None` for an item of an unknown algorithm or another form.
fn parse_token(item: &str) -> Option<(Alg, Option<Vec<u8>>)> {
    let expression = item.split_once('?').map_or(item, |(e, _)| e);
    let (alg, value) = expression.split_once('-').unwrap_or((expression, ""));
    let alg = Alg::parse(alg)?;
    // The SRI grammar allows base64; browsers also take base64url, with or without padding.
    let digest = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(value).ok())
        .filter(|d| d.len() == alg.len());
    Some((alg, digest))
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
        assert!(Integrity::parse(&good384).matches(&d));
        // A good weaker token does not save a bad stronger one.
        let i = Integrity::parse(&format!("{good384} {bad512}"));
        assert!(!i.matches(&d));
        // Any token of the strongest algorithm may match.
        let i = Integrity::parse(&format!("{bad384} {good256} {good384}"));
        assert!(i.matches(&d));
        assert_eq!(i.strongest(), Alg::Sha384);
        assert_eq!(i.checkable(), Ok(Alg::Sha384));
    }

    /// The cases of web-platform-tests' `subresource-integrity/subresource-integrity.html`
    /// (the script and style tests), as facts about "do bytes match metadataList": the
    /// metadata written as there, with digests of our own content where the case needs a
    /// correct one, and whether the browser loads the content.
    #[test]
    fn web_platform_tests_cases() {
        let content = b"window.stackmedic_sri_vector = true;\n";
        let d = digests_of(content);
        let sha256 = sri_token(Alg::Sha256, &d[&Alg::Sha256]);
        let sha384 = sri_token(Alg::Sha384, &d[&Alg::Sha384]);
        let sha512 = sri_token(Alg::Sha512, &d[&Alg::Sha512]);
        let deadbeef = "sha256-deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdead";
        let cases: Vec<(&str, String, bool)> = vec![
            ("correct sha256", sha256.clone(), true),
            ("correct sha384", sha384.clone(), true),
            ("correct sha512", sha512.clone(), true),
            ("empty integrity", String::new(), true),
            ("incorrect hash", deadbeef.into(), false),
            (
                "multiple sha256 hashes, including correct",
                format!("{sha256} {deadbeef}"),
                true,
            ),
            (
                "multiple sha256 hashes, including unknown algorithm",
                format!("{sha256} foo666-deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdead"),
                true,
            ),
            (
                "sha256 mismatch, sha512 match",
                format!("{sha512} {deadbeef}"),
                true,
            ),
            (
                "sha256 match, sha512 mismatch",
                format!("sha512-deadbeefspbnUnwooKGNNCb39nvg+EW0O9hDScTXeo/9pVZztLSUYU3LNV6H0lZapo8bCJUpyPPLAzE9fDzpxg== {sha256}"),
                false,
            ),
            (
                "correct hash, options",
                format!("{sha256}?foo=bar?spam=eggs"),
                true,
            ),
            (
                "unknown algorithm only",
                "foo666-U9WYDtBWkcHx13+9UKk/3Q5eoqDc4YGxYb07EPWzb9E=".into(),
                true,
            ),
            ("sha256 digest not base64 encoded", "sha256-%".into(), false),
            ("sha384 digest not base64 encoded", "sha384-%".into(), false),
            ("sha512 digest not base64 encoded", "sha512-%".into(), false),
            (
                "unknown algorithm, digest not base64 encoded",
                "foo666-%".into(),
                true,
            ),
            (
                "digest not base64 encoded, options",
                "sha256-%?foo=bar?spam=eggs".into(),
                false,
            ),
            (
                "multiple sha256 digests, including not base64 encoded",
                format!("{sha256} sha256-%"),
                true,
            ),
            (
                "multiple sha256 digests, including unknown algorithm with digest not base64 encoded",
                format!("{sha256} foo666-%"),
                true,
            ),
            (
                "sha256 digest not base64 encoded, correct sha512 digest",
                format!("{sha512} sha256-%"),
                true,
            ),
            (
                "correct sha256 digest, sha512 digest not base64 encoded",
                format!("sha512-% {sha256}"),
                false,
            ),
            (
                "correct sha256 and sha512 hash",
                format!("{sha256} {sha512}"),
                true,
            ),
            (
                "incorrect sha256 and sha512 hash",
                "sha256-fail83bWhnLig+d2VPKrRrTRyhqoDRo1ruGqZLZ0= sha512-failB7ktnzcb6h+kB9CUIuc8qvKIyLpygRJdQSEEycRy74dUsB+Yu9rSjpOPjRUblle8WWX9Gn7v39LK2Oceig==".into(),
                false,
            ),
            (
                "unknown algorithm with options",
                "foo666-CzHgdJ7wOccM8L89n4bhcJMz3F+SPLT7YZk7gyCWUV4=?foo=bar?spam=eggs".into(),
                true,
            ),
        ];
        let mut failures = Vec::new();
        for (name, metadata, loads) in &cases {
            if Integrity::parse(metadata).matches(&d) != *loads {
                failures.push(format!("{name}: {metadata:?} should load: {loads}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        // Where nothing can be told apart, the probe says so instead of reporting a verdict.
        assert!(Integrity::parse("").checkable().is_err());
        assert!(Integrity::parse("foo666-%").checkable().is_err());
        assert!(Integrity::parse(&format!("sha512-% {sha256}"))
            .checkable()
            .is_err());
        assert_eq!(
            Integrity::parse(&format!("{sha512} sha256-%")).checkable(),
            Ok(Alg::Sha512)
        );
        // Upper-case algorithm names and base64url without padding are read as browsers do.
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[&Alg::Sha256]);
        assert!(Integrity::parse(&format!("SHA256-{url}")).matches(&d));
    }
}
