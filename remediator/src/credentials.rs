//! Credentials written as files or environment variables, never in the configuration itself:
//! what `POST /webhook` accepts, and what the remediator sends to Alertmanager and admin APIs.
//!
//! This module sits below both `config` and `action`, so neither imports the other for it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use stackmedic_common::config::{self as common, ConfigErrors};

/// Basic auth as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthFile {
    /// User name.
    pub username: String,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
}

/// A bearer token and/or basic auth as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    /// File holding the bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token.
    pub bearer_token_env: Option<String>,
    /// Basic auth.
    pub basic_auth: Option<BasicAuthFile>,
}

/// The key a secret is given by in the file, for messages about it: `<stem>_env` when only the
/// variable is named, `<stem>_file` otherwise (a file, when given, is what is read).
#[must_use]
pub fn secret_key(file: Option<&Path>, env: Option<&str>, stem: &str) -> String {
    if file.is_none() && env.is_some() {
        format!("{stem}_env")
    } else {
        format!("{stem}_file")
    }
}

/// Credentials read from their files or variables at load.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Bearer token.
    pub bearer_token: Option<String>,
    /// Basic auth user name and password.
    pub basic_auth: Option<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<secret>"),
            )
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(u, _)| (u, "<secret>")),
            )
            .finish()
    }
}

impl Credentials {
    /// Reads the secrets `file` names, recording each problem under `path`.
    pub fn load(file: CredentialsFile, path: &str, errs: &mut ConfigErrors) -> Self {
        let mut c = Credentials::default();
        if file.bearer_token_file.is_some() || file.bearer_token_env.is_some() {
            if file.bearer_token_file.is_some() && file.bearer_token_env.is_some() {
                errs.push(
                    common::join(path, "bearer_token_file"),
                    "give bearer_token_file or bearer_token_env, not both",
                );
            }
            let (f, env) = (
                file.bearer_token_file.as_deref(),
                file.bearer_token_env.as_deref(),
            );
            match common::read_secret(f, env) {
                Ok(t) => c.bearer_token = Some(t),
                Err(e) => errs.push(common::join(path, &secret_key(f, env, "bearer_token")), e),
            }
        }
        if let Some(b) = file.basic_auth {
            let p = common::join(path, "basic_auth");
            if b.username.is_empty() {
                errs.push(common::join(&p, "username"), "must not be empty");
            }
            let (f, env) = (b.password_file.as_deref(), b.password_env.as_deref());
            match common::read_secret(f, env) {
                Ok(pw) => c.basic_auth = Some((b.username, pw)),
                Err(e) => errs.push(common::join(&p, &secret_key(f, env, "password")), e),
            }
        }
        c
    }

    /// Whether any credential is configured.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.bearer_token.is_some() || self.basic_auth.is_some()
    }

    /// Adds the configured credentials to an outgoing request.
    pub fn apply(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(t) = &self.bearer_token {
            req = req.bearer_auth(t);
        }
        if let Some((u, p)) = &self.basic_auth {
            req = req.basic_auth(u, Some(p));
        }
        req
    }
}
