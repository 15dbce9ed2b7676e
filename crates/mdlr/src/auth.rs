//! Credentials and the access-token cache.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cloud::Endpoints;
use crate::error::{Error, Result};
use crate::http::{Http, Request};
use crate::secret::Secret;

/// How the client gets its bearer token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credential {
    /// A bearer token used as is. It cannot be refreshed.
    Token(Secret),
    /// An app registration's client id and secret (OAuth 2.0 client credentials).
    ClientSecret {
        /// The directory (tenant) id or domain.
        tenant: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret.
        secret: Secret,
    },
}

impl Credential {
    /// A bearer token used as is.
    pub fn token(token: impl Into<Secret>) -> Credential {
        Credential::Token(token.into())
    }

    /// Client credentials with a secret.
    pub fn client_secret(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<Secret>,
    ) -> Credential {
        Credential::ClientSecret {
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret: secret.into(),
        }
    }

    /// A short name of the method, for messages (`token`, `client-secret`).
    pub fn method(&self) -> &'static str {
        match self {
            Credential::Token(_) => "token",
            Credential::ClientSecret { .. } => "client-secret",
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Credential::Token(t) if t.expose().trim().is_empty() => {
                Err(Error::config("the bearer token is empty"))
            }
            Credential::Token(t) if t.expose().chars().any(|c| c.is_control()) => Err(
                Error::config("the bearer token contains control characters or line breaks"),
            ),
            Credential::ClientSecret { tenant, .. }
                if tenant.is_empty()
                    || !tenant
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') =>
            {
                Err(Error::config(format!(
                    "tenant {tenant:?} is not a tenant id or domain"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Refresh this long before the token says it expires (clocks drift).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

struct Cached {
    token: Secret,
    /// `None`: never expires as far as we know (a given token).
    refresh_at: Option<Instant>,
}

/// Holds the current token; shared by all clones of a client.
pub(crate) struct TokenCache {
    credential: Credential,
    current: Mutex<Option<Cached>>,
}

impl TokenCache {
    pub(crate) fn new(credential: Credential) -> TokenCache {
        TokenCache {
            credential,
            current: Mutex::new(None),
        }
    }

    /// Whether a rejected token can be replaced by asking again.
    pub(crate) fn can_refresh(&self) -> bool {
        !matches!(self.credential, Credential::Token(_))
    }

    /// The current token, fetching a new one when there is none or it is about to expire.
    pub(crate) fn token(&self, http: &Http, endpoints: &Endpoints) -> Result<Secret> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = current.as_ref()
            && c.refresh_at.is_none_or(|t| Instant::now() < t)
        {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch(http, endpoints)?;
        let token = fresh.token.clone();
        *current = Some(fresh);
        Ok(token)
    }

    /// The secrets this cache holds: the credential's and the current token.
    pub(crate) fn secrets(&self) -> Vec<Secret> {
        let mut all = match &self.credential {
            Credential::Token(t) => vec![t.clone()],
            Credential::ClientSecret { secret, .. } => vec![secret.clone()],
        };
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = current.as_ref() {
            all.push(c.token.clone());
        }
        all
    }

    /// Forgets the current token (after the API rejected it with 401).
    pub(crate) fn invalidate(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn fetch(&self, http: &Http, endpoints: &Endpoints) -> Result<Cached> {
        match &self.credential {
            Credential::Token(t) => Ok(Cached {
                token: t.clone(),
                refresh_at: None,
            }),
            Credential::ClientSecret {
                tenant,
                client_id,
                secret,
            } => {
                let url = format!(
                    "{}/{tenant}/oauth2/v2.0/token",
                    endpoints.authority.trim_end_matches('/')
                );
                let started = Instant::now();
                let req = Request::form(
                    &url,
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        ("client_secret", secret.expose()),
                        ("scope", &endpoints.scope),
                    ],
                );
                let resp = http.plain(&req)?;
                let status = resp.status();
                let body = resp.read_limited(1 << 20, "token reply")?;
                // The endpoint may quote the form back, secret included.
                let body = crate::api::scrub_body(&body, &[secret.expose().to_owned()]);
                parse_token_reply(status, &body, started).map_err(|e| e.redact(&[secret.expose()]))
            }
        }
    }
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
}

fn parse_token_reply(status: u16, body: &[u8], started: Instant) -> Result<Cached> {
    let reply: Option<TokenReply> = serde_json::from_slice(body).ok();
    match reply {
        Some(TokenReply {
            access_token: Some(token),
            expires_in,
            ..
        }) if status == 200 && !token.is_empty() => {
            let seconds = match expires_in {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            }
            .unwrap_or(3599);
            let lifetime = Duration::from_secs(seconds);
            Ok(Cached {
                token: Secret::new(token),
                refresh_at: Some(started + lifetime.saturating_sub(REFRESH_MARGIN)),
            })
        }
        Some(r) if r.error.is_some() => Err(Error::Auth {
            status: Some(status),
            code: r.error,
            message: r
                .error_description
                .as_deref()
                .and_then(|d| d.lines().next())
                .unwrap_or("the token endpoint refused")
                .to_owned(),
            correlation_id: r.correlation_id.or(r.trace_id),
        }),
        _ => Err(Error::Auth {
            status: Some(status),
            code: None,
            message: format!(
                "the token endpoint sent no token ({})",
                crate::api::describe_body(body)
            ),
            correlation_id: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_reply_numbers_may_be_strings() {
        let c = parse_token_reply(
            200,
            br#"{"token_type":"Bearer","expires_in":"3599","access_token":"abc"}"#,
            Instant::now(),
        )
        .expect("parses");
        assert_eq!(c.token.expose(), "abc");
        assert!(c.refresh_at.is_some());
    }

    #[test]
    fn token_errors_keep_code_and_first_line() {
        let e = parse_token_reply(
            401,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret.\r\nTrace ID: 1","correlation_id":"c-1"}"#,
            Instant::now(),
        );
        match e {
            Err(Error::Auth {
                code,
                message,
                correlation_id,
                ..
            }) => {
                assert_eq!(code.as_deref(), Some("invalid_client"));
                assert_eq!(message, "AADSTS7000215: Invalid client secret.");
                assert_eq!(correlation_id.as_deref(), Some("c-1"));
            }
            other => panic!("{:?}", other.err()),
        }
        assert!(parse_token_reply(502, b"<html>", Instant::now()).is_err());
    }

    #[test]
    fn credential_debug_is_redacted() {
        let c = Credential::client_secret("t", "c", "s3cr3t-value");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(!format!("{:?}", Credential::token("tok-123")).contains("tok-123"));
    }
}
