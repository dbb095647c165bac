//! URL mode: the manifest's entries fetched from the deployed base URL, hashed while they
//! stream in, with conditional requests against a cache of `ETag`s.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use url::Url;

use super::integrity::{Digests, Integrity, MultiHasher};
use super::{Target, Verdict, Work, SETTLE};
use crate::probe::fetch::scoped::{self, RedirectScope};
use crate::probe::{Reason, RunContext};
use crate::support::lock;

/// URL requests in flight at once.
const URL_CONCURRENCY: usize = 4;

/// Cached digest of a URL, reused on `304 Not Modified` until `revalidate_after` has passed
/// since the full fetch it came from.
struct UrlCached {
    etag: String,
    digests: Digests,
    fetched: Instant,
}

/// The remote half of an `sri` probe: the deployed base URL, its client, and the `ETag`s and
/// digests of the last full fetches. Redirects are followed by the probe itself, only within
/// the base URL's origin and `allowed_hosts`: an entry is judged on the content of the host it
/// was configured for.
pub(super) struct Remote {
    base: Url,
    client: reqwest::Client,
    scope: RedirectScope,
    max_body: u64,
    revalidate_after: Duration,
    cache: Mutex<HashMap<String, UrlCached>>,
    work: Mutex<Work>,
}

impl Remote {
    pub(super) fn new(
        mut base: Url,
        client: reqwest::Client,
        allowed_hosts: &[String],
        max_body: u64,
        revalidate_after: Duration,
    ) -> Self {
        // Without a trailing slash the last segment would be replaced, not extended.
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Self {
            scope: RedirectScope::new(&base, allowed_hosts, "the base URL's"),
            base,
            client,
            max_body,
            revalidate_after,
            cache: Mutex::default(),
            work: Mutex::default(),
        }
    }

    /// The base URL, ending in `/`.
    pub(super) fn base(&self) -> &Url {
        &self.base
    }

    /// Hashing work since the probe was built.
    pub(super) fn work(&self) -> Work {
        *lock(&self.work)
    }

    /// Fetches and checks every target, a few at a time, each within the run's deadline.
    pub(super) async fn check(
        &self,
        cx: &RunContext,
        targets: &[Target],
        cancel: &Arc<AtomicBool>,
    ) -> Vec<Verdict> {
        // The futures are collected first: a lazy `map` closure in the stream makes the
        // probe's future fail the runner's `Send` bound (a higher-ranked lifetime limitation).
        let mut checks = Vec::with_capacity(targets.len());
        let mut urls = HashSet::with_capacity(targets.len());
        for t in targets {
            let mut url = self.base.clone();
            if let Ok(mut segs) = url.path_segments_mut() {
                segs.pop_if_empty().extend(&t.segs);
            }
            // The key's query is the URL's, not part of its last segment.
            url.set_query(t.query.as_deref());
            urls.insert(url.to_string());
            checks.push(self.check_url(cx, url, &t.integrity, cancel.clone()));
        }
        let verdicts = futures_util::stream::iter(checks)
            .buffered(URL_CONCURRENCY)
            .collect()
            .await;
        // The cache holds only the manifest's current URLs.
        lock(&self.cache).retain(|u, _| urls.contains(u));
        verdicts
    }

    async fn check_url(
        &self,
        cx: &RunContext,
        url: Url,
        integrity: &Integrity,
        cancel: Arc<AtomicBool>,
    ) -> Verdict {
        let alg = integrity.strongest();
        let cached_etag = lock(&self.cache)
            .get(url.as_str())
            .filter(|c| c.digests.contains_key(&alg) && c.fetched.elapsed() < self.revalidate_after)
            .map(|c| c.etag.clone());
        let mut headers = http::HeaderMap::new();
        if let Some(etag) = cached_etag
            .as_deref()
            .and_then(|e| http::HeaderValue::from_str(e).ok())
        {
            headers.insert(http::header::IF_NONE_MATCH, etag);
        }
        let (mut resp, _) = match scoped::open(
            cx,
            &self.client,
            &http::Method::GET,
            &url,
            &headers,
            self.max_body,
            &self.scope,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return Verdict::Failed(e.reason, format!("{url}: {}", e.message)),
        };
        let status = resp.status.as_u16();
        if status == 304 && cached_etag.is_some() {
            if let Some(c) = lock(&self.cache).get(url.as_str()) {
                return Verdict::of(integrity, &c.digests);
            }
        }
        if status == 404 || status == 410 {
            return Verdict::Missing;
        }
        if status != 200 {
            return Verdict::Failed(Reason::HttpStatus, format!("{url}: status {status}"));
        }
        let etag = resp
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|_| settled_response(&resp.headers))
            .map(str::to_string);
        // Chunks go to a hasher on a blocking thread through a short queue, so a big asset
        // neither sits in memory nor hashes on the async workers.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
        let hasher = tokio::task::spawn_blocking(move || {
            let mut h = MultiHasher::new(&[alg]);
            let mut n = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                h.update(&chunk);
                n += chunk.len() as u64;
            }
            (h.finish(), n)
        });
        let mut failure = None;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if tx.send(c).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let (digests, n) = match hasher.await {
            Ok(r) => r,
            Err(e) => return Verdict::Failed(Reason::Other, format!("hashing task failed: {e}")),
        };
        if let Some(e) = failure {
            return Verdict::Failed(e.reason, format!("{url}: {}", e.message));
        }
        lock(&self.work).add(Work {
            hashes: 1,
            bytes: n,
        });
        let mut cache = lock(&self.cache);
        match etag {
            Some(etag) => {
                cache.insert(
                    url.to_string(),
                    UrlCached {
                        etag,
                        digests: digests.clone(),
                        fetched: Instant::now(),
                    },
                );
            }
            None => {
                cache.remove(url.as_str());
            }
        }
        Verdict::of(integrity, &digests)
    }
}

/// Whether a response's `ETag` may be trusted for later `304`s: nginx and most static servers
/// build it from the modification time in whole seconds and the size, so a same-size write
/// within the second of the served version keeps the `ETag`. It is trusted only when the
/// `Last-Modified` lies at least [`SETTLE`] plus one second before the server's `Date`.
fn settled_response(headers: &http::HeaderMap) -> bool {
    let date = |name: http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
    };
    match (date(http::header::LAST_MODIFIED), date(http::header::DATE)) {
        (Some(modified), Some(now)) => (now - modified).num_seconds() > SETTLE.as_secs() as i64,
        _ => false,
    }
}
