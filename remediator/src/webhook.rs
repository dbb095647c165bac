//! Alertmanager's webhook payload (version 4) and the authentication of its sender.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::credentials::Credentials;
use crate::limits;

/// The body Alertmanager posts to a `webhook_config` URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// Payload format version; only `"4"` is accepted.
    pub version: String,
    /// Group key of the notification.
    #[serde(default)]
    pub group_key: String,
    /// Alerts dropped by Alertmanager's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    /// Receiver name.
    #[serde(default)]
    pub receiver: String,
    /// Labels shared by the group.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels common to all alerts.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations common to all alerts.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's external URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Start time, RFC 3339.
    #[serde(default)]
    pub starts_at: String,
    /// End time, RFC 3339 (zero time while firing).
    #[serde(default)]
    pub ends_at: String,
    /// Link to the alert's source.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's identity of the label set.
    #[serde(default)]
    pub fingerprint: String,
}

/// State of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Active.
    Firing,
    /// Ended.
    Resolved,
}

impl Alert {
    /// The identity of this occurrence of the alert: its fingerprint (computed from the labels
    /// when absent) and its start time. Alertmanager re-sends the same pair until it resolves.
    /// A value longer than [`limits::IDENTITY_BYTES`] is replaced by its digest.
    #[must_use]
    pub fn occurrence(&self) -> (String, String) {
        let fp = if self.fingerprint.is_empty() {
            let mut h = Sha256::new();
            for (k, v) in &self.labels {
                h.update(k.as_bytes());
                h.update([0xff]);
                h.update(v.as_bytes());
                h.update([0xff]);
            }
            let d = h.finalize();
            d[..8].iter().map(|b| format!("{b:02x}")).collect()
        } else {
            limits::identity(&self.fingerprint)
        };
        (fp, limits::identity(&self.starts_at))
    }
}

/// Why a webhook body was refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not the expected shape.
    #[error("invalid webhook payload: {0}")]
    Malformed(String),
    /// A version other than 4.
    #[error("unsupported webhook payload version {0:?}, expected \"4\"")]
    Version(String),
}

/// Parses and validates a webhook body.
///
/// # Errors
/// A malformed body or a version other than 4.
pub fn parse(body: &[u8]) -> Result<Payload, PayloadError> {
    // Most bodies are well-formed version 4 payloads: read straight into the typed payload.
    if let Ok(p) = serde_json::from_slice::<Payload>(body) {
        if p.version == "4" {
            return Ok(p);
        }
        return Err(PayloadError::Version(p.version));
    }
    // Otherwise the version is checked first, so that a payload of another version is named
    // as such even when its shape differs.
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    match v.get("version") {
        Some(serde_json::Value::String(s)) if s == "4" => {}
        Some(serde_json::Value::String(s)) => return Err(PayloadError::Version(s.clone())),
        Some(other) => return Err(PayloadError::Version(other.to_string())),
        None => return Err(PayloadError::Malformed("missing field `version`".into())),
    }
    serde_json::from_value(v).map_err(|e| PayloadError::Malformed(e.to_string()))
}

/// Checks the `Authorization` header against the configured credentials in constant time.
/// Either a matching bearer token or matching basic auth is enough.
#[must_use]
pub fn authorized(creds: &Credentials, header: Option<&http::HeaderValue>) -> bool {
    if !creds.is_set() {
        return true;
    }
    let Some(h) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if let Some(token) = &creds.bearer_token {
            return ct_eq(rest.as_bytes(), token.as_bytes());
        }
    } else if scheme.eq_ignore_ascii_case("basic") {
        if let Some((user, pass)) = &creds.basic_auth {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return false;
            };
            let Some(i) = decoded.iter().position(|b| *b == b':') else {
                return false;
            };
            let user_ok = ct_eq(&decoded[..i], user.as_bytes());
            let pass_ok = ct_eq(&decoded[i + 1..], pass.as_bytes());
            return user_ok & pass_ok;
        }
    }
    false
}

/// Compares digests so neither the content nor the length of the secret leaks through timing.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    da.ct_eq(&db).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_shape() {
        assert!(matches!(parse(b"{"), Err(PayloadError::Malformed(_))));
        assert!(matches!(
            parse(br#"{"version":"3","alerts":[]}"#),
            Err(PayloadError::Version(v)) if v == "3"
        ));
        assert!(matches!(
            parse(br#"{"version":"4","alerts":[{"status":"weird","labels":{}}]}"#),
            Err(PayloadError::Malformed(_))
        ));
        let p = parse(br#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-11-22T10:00:00Z"}]}"#).unwrap();
        let (fp, start) = p.alerts[0].occurrence();
        assert_eq!(fp.len(), 16);
        assert_eq!(start, "2026-11-22T10:00:00Z");
    }

    #[test]
    fn auth() {
        let creds = Credentials {
            bearer_token: Some("s3cret".into()),
            basic_auth: Some(("am".into(), "pw".into())),
        };
        let hv = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert!(authorized(&creds, Some(&hv("Bearer s3cret"))));
        assert!(!authorized(&creds, Some(&hv("Bearer s3cre"))));
        assert!(!authorized(&creds, None));
        let basic = base64::engine::general_purpose::STANDARD.encode("am:pw");
        assert!(authorized(&creds, Some(&hv(&format!("Basic {basic}")))));
        let basic = base64::engine::general_purpose::STANDARD.encode("am:px");
        assert!(!authorized(&creds, Some(&hv(&format!("Basic {basic}")))));
        assert!(authorized(&Credentials::default(), None));
    }
}
