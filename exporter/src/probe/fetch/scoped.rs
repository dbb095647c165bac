//! Requests that follow redirects themselves, and only within a scope: the origin of the URL
//! the configuration names, the origin of the URL asked for, or a host listed in
//! `allowed_hosts` (a CDN). A server must not be able to send a probe to another port or host,
//! nor make it judge another host's content. The final URL is returned, so that what the
//! response refers to is resolved against it.

use http::{HeaderMap, Method};
use stackmedic_common::ConfigErrors;
use url::Url;

use super::Streaming;
use crate::probe::{ProbeError, Reason, RunContext};

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// Where redirects may lead.
#[derive(Debug, Clone)]
pub struct RedirectScope {
    /// The configured URL's origin (scheme, host, port).
    origin: url::Origin,
    /// `allowed_hosts`, lower case.
    allowed_hosts: Vec<String>,
    /// What the configured URL is, for messages ("the playlist's", "the base URL's").
    whose: &'static str,
}

impl RedirectScope {
    /// The scope of `configured` and its `allowed_hosts`; `whose` names it in messages.
    #[must_use]
    pub fn new(configured: &Url, allowed_hosts: &[String], whose: &'static str) -> Self {
        Self {
            origin: configured.origin(),
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            whose,
        }
    }

    /// Whether `host` (any case) is one of `allowed_hosts`.
    #[must_use]
    pub fn allows_host(&self, host: &str) -> bool {
        self.allowed_hosts.contains(&host.to_ascii_lowercase())
    }

    /// Checks a redirect from `from` to `to`: it is followed only to the configured URL's
    /// origin, to the origin of the URL that was asked for, or to an `allowed_hosts` host over
    /// http(s).
    ///
    /// # Errors
    /// `http_status`, naming both URLs, when the redirect leaves the scope.
    pub fn allows(&self, from: &Url, to: &Url) -> Result<(), ProbeError> {
        let origin = to.origin();
        if self.origin == origin
            || from.origin() == origin
            || (matches!(to.scheme(), "http" | "https")
                && self.allows_host(to.host_str().unwrap_or_default()))
        {
            return Ok(());
        }
        Err(ProbeError::new(
            Reason::HttpStatus,
            format!(
                "redirect from {from} to {to} leaves {} origin; not followed (configure the \
                 final URL, or list its host in allowed_hosts)",
                self.whose
            ),
        ))
    }
}

/// Sends `method` to `url` with `headers`, following at most [`MAX_REDIRECTS`] redirects,
/// each only within `scope`; returns the response (whose body the caller reads, at most
/// `max_body` bytes) and the URL that gave it. A redirect without `Location` is returned as it
/// is, for the caller's status check.
///
/// # Errors
/// The transport's classified error; `http_status` for a redirect out of the scope, to an
/// invalid location, or one too many.
pub async fn open(
    cx: &RunContext,
    client: &reqwest::Client,
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
    max_body: u64,
    scope: &RedirectScope,
) -> Result<(Streaming, Url), ProbeError> {
    let mut current = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let req = client
            .request(method.clone(), current.clone())
            .headers(headers.clone());
        let resp = super::open(cx, req, max_body).await?;
        let location = resp
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok());
        let (true, Some(location)) = (resp.status.is_redirection(), location) else {
            return Ok((resp, current));
        };
        let next = current.join(location).map_err(|e| {
            ProbeError::new(
                Reason::HttpStatus,
                format!("redirect from {current} to an invalid location: {e}"),
            )
        })?;
        scope.allows(&current, &next)?;
        current = next;
    }
    Err(ProbeError::new(
        Reason::HttpStatus,
        format!("{url}: more than {MAX_REDIRECTS} redirects"),
    ))
}

/// Checks `allowed_hosts`: each a host name or IP address, without scheme, port or path.
pub fn validate_hosts(hosts: &[String], path: &str, errs: &mut ConfigErrors) {
    for (i, host) in hosts.iter().enumerate() {
        if url::Host::parse(host).is_err() || host.contains(['/', ':', '@']) {
            errs.push(
                format!("{path}[{i}]"),
                format!("{host:?} is not a host name or IP address"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_within_the_origin_or_the_allowed_hosts() {
        let root = Url::parse("http://127.0.0.1:8080/cam/live.m3u8").expect("url");
        let scope = RedirectScope::new(&root, &["cdn.example".to_string()], "the playlist's");
        let to = |u: &str| Url::parse(u).expect("url");
        for ok in [
            "http://127.0.0.1:8080/other/live.m3u8",
            "https://CDN.example/cam/live.m3u8",
            "http://cdn.example:9000/x.ts",
        ] {
            assert!(scope.allows(&root, &to(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:8081/cam/live.m3u8",
            "https://127.0.0.1:8080/cam/live.m3u8",
            "http://127.0.0.2:8080/cam/live.m3u8",
            "file:///etc/passwd",
        ] {
            let e = scope.allows(&root, &to(bad)).expect_err(bad);
            assert_eq!(e.reason, Reason::HttpStatus);
            assert!(e.message.contains("the playlist's origin"), "{}", e.message);
        }
        // A CDN may redirect within its own origin.
        let cdn = to("http://cdn.example:9000/a.ts");
        assert!(scope
            .allows(&cdn, &to("http://cdn.example:9000/b.ts"))
            .is_ok());
    }

    #[test]
    fn hosts_are_checked() {
        let mut errs = ConfigErrors::default();
        validate_hosts(
            &[
                "cdn.example".into(),
                "127.0.0.1".into(),
                "http://x".into(),
                "a:80".into(),
            ],
            "p.allowed_hosts",
            &mut errs,
        );
        let lines: Vec<String> = errs.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "p.allowed_hosts[2]: \"http://x\" is not a host name or IP address",
                "p.allowed_hosts[3]: \"a:80\" is not a host name or IP address",
            ]
        );
    }
}
