//! `http_sequence`: ordered admin-API calls with delays and expected statuses. Base URL and
//! credentials come from the target; paths from the rule; placeholder values from labels only
//! when allow-listed, and then percent-encoded.

use std::time::Instant;

use super::{pause, ActionError, Context};

/// Runs the steps in order, stopping at the first unexpected status.
///
/// # Errors
/// A failure naming the step and what it got.
pub async fn run(ctx: &Context<'_>) -> Result<String, ActionError> {
    let http = ctx
        .target
        .http
        .as_ref()
        .ok_or_else(|| ActionError::Denied("target has no http section".into()))?;
    let mut done = Vec::new();
    for (i, step) in ctx.rule.steps.iter().enumerate() {
        let path = fill(&step.path, &ctx.selection.params).map_err(ActionError::Denied)?;
        let url = join_url(&http.base_url, &path).map_err(ActionError::Denied)?;
        let method = reqwest::Method::from_bytes(step.method.as_bytes())
            .map_err(|e| ActionError::Denied(format!("step {i}: {e}")))?;
        let mut req = ctx.http.request(method.clone(), url.clone());
        if let Some(t) = &http.credentials.bearer_token {
            req = req.bearer_auth(t);
        }
        if let Some((u, p)) = &http.credentials.basic_auth {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = &step.body {
            req = req.json(b);
        }
        let started = Instant::now();
        let resp = req
            .send()
            .await
            .map_err(|e| ActionError::Failed(format!("step {i} {method} {path}: {e}")))?;
        let status = resp.status().as_u16();
        let ok = if step.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            step.expect_status.contains(&status)
        };
        if !ok {
            return Err(ActionError::Failed(format!(
                "step {i} {method} {path}: unexpected status {status} after {} ms (done before: {})",
                started.elapsed().as_millis(),
                if done.is_empty() { "nothing".to_string() } else { done.join(", ") }
            )));
        }
        done.push(format!("{method} {path} -> {status}"));
        pause(step.delay_after).await;
    }
    Ok(done.join(", "))
}

/// Replaces `{name}` placeholders with percent-encoded allow-listed values.
fn fill(
    template: &str,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in {template:?}"))?;
        let name = &after[..j];
        let value = params
            .get(name)
            .ok_or_else(|| format!("no value for placeholder {{{name}}}"))?;
        out.push_str(&encode_segment(value));
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value stays one path
/// segment whatever it holds.
#[must_use]
pub fn encode_segment(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}

fn join_url(base: &url::Url, path: &str) -> Result<url::Url, String> {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let (p, q) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    u.set_path(&format!("{prefix}{p}"));
    u.set_query(q);
    if u.host() != base.host() || u.port_or_known_default() != base.port_or_known_default() {
        return Err("step path would leave the target's base URL".into());
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_encoded() {
        let mut p = std::collections::BTreeMap::new();
        p.insert("s".to_string(), "../a b;c/d".to_string());
        assert_eq!(
            fill("/api/{s}/restart", &p).unwrap(),
            "/api/..%2Fa%20b%3Bc%2Fd/restart"
        );
        p.insert("s".to_string(), "..".to_string());
        assert_eq!(fill("/api/{s}", &p).unwrap(), "/api/%2E%2E");
        let base = url::Url::parse("http://127.0.0.1:8/admin/").unwrap();
        assert_eq!(
            join_url(&base, "/api/x?y=1").unwrap().as_str(),
            "http://127.0.0.1:8/admin/api/x?y=1"
        );
    }
}
