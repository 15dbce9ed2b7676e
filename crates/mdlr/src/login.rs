//! A person's sign-in with the device-code flow, and what a token grants.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::auth::{LoginTokens, post_token};
use crate::cloud::Endpoints;
use crate::error::{Error, Result};
use crate::http::{Http, Request, TransportConfig};
use crate::ids::check_tenant;
use crate::jwt::claims;
use crate::secret::{Redactor, Secret};

/// The device-code flow (OAuth 2.0 device authorization grant) for a person at a
/// terminal: [`start`](DeviceLogin::start) gets a code to enter at a web page, and
/// [`wait`](DeviceLogin::wait) polls until the person has signed in. Built with
/// [`DeviceLogin::new`], or [`ClientBuilder::device_login`](crate::ClientBuilder::device_login)
/// for the same authority, proxies and CAs as a client.
pub struct DeviceLogin {
    pub(crate) http: Http,
    pub(crate) endpoints: Endpoints,
    pub(crate) tenant: String,
    pub(crate) client_id: String,
}

/// What the person must do: open `verification_uri` and enter `user_code`.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    /// The code to enter.
    pub user_code: String,
    /// Where to enter it.
    pub verification_uri: String,
    /// The service's own instructions, in the user's language.
    pub message: String,
    /// How long the code is valid.
    pub expires_in: Duration,
    /// How often to ask whether the person has signed in.
    pub interval: Duration,
    device_code: Secret,
}

#[derive(Deserialize)]
struct DeviceCodeReply {
    device_code: Option<String>,
    user_code: Option<String>,
    verification_uri: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    interval: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

fn seconds(v: Option<&serde_json::Value>) -> Option<u64> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Longest interval between polls, whatever `slow_down` says.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

impl DeviceLogin {
    /// A device-code login at `endpoints`' authority for their scope, connecting as
    /// `transport` says. `tenant` may be `organizations` for any work account;
    /// `client_id` is a public client app that allows the flow.
    pub fn new(
        endpoints: Endpoints,
        transport: &TransportConfig,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Result<DeviceLogin> {
        let (tenant, client_id) = (tenant.into(), client_id.into());
        endpoints.validate()?;
        let http = Http::new(transport, Vec::new(), Redactor::default())?;
        check_tenant(&tenant)?;
        if client_id.trim().is_empty() {
            return Err(Error::config("the device-code login needs a client id"));
        }
        Ok(DeviceLogin {
            http,
            endpoints,
            tenant,
            client_id,
        })
    }

    fn url(&self, leaf: &str) -> String {
        format!(
            "{}/{}/oauth2/v2.0/{leaf}",
            self.endpoints.authority.trim_end_matches('/'),
            self.tenant
        )
    }

    fn scope(&self) -> String {
        format!("{} offline_access", self.endpoints.scope)
    }

    /// Asks for a device code.
    pub fn start(&self) -> Result<DeviceCode> {
        let scope = self.scope();
        let url = self.url("devicecode");
        let req = Request::form(&url, &[("client_id", &self.client_id), ("scope", &scope)]);
        let resp = self.http.plain(&req)?;
        let status = resp.status();
        let body = resp.read_limited(1 << 20, "device code reply")?;
        let reply: DeviceCodeReply = serde_json::from_slice(&body).map_err(|_| Error::Auth {
            status: Some(status),
            code: None,
            message: format!(
                "the device code endpoint sent no code ({})",
                crate::reply::describe_body(&body)
            ),
            correlation_id: None,
        })?;
        if let Some(error) = reply.error {
            return Err(Error::Auth {
                status: Some(status),
                code: Some(error),
                message: reply
                    .error_description
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .unwrap_or("the device code endpoint refused")
                    .to_owned(),
                correlation_id: reply.correlation_id,
            });
        }
        let expires_in = Duration::from_secs(seconds(reply.expires_in.as_ref()).unwrap_or(900));
        let interval = Duration::from_secs(seconds(reply.interval.as_ref()).unwrap_or(5).max(1));
        match (reply.device_code, reply.user_code, reply.verification_uri) {
            (Some(device_code), Some(user_code), Some(verification_uri)) if status == 200 => {
                let message = reply.message.unwrap_or_else(|| {
                    format!("To sign in, open {verification_uri} and enter the code {user_code}.")
                });
                let device_code = Secret::new(device_code);
                self.http.redactor().add(&device_code);
                Ok(DeviceCode {
                    user_code,
                    verification_uri,
                    message,
                    expires_in,
                    interval,
                    device_code,
                })
            }
            _ => Err(Error::malformed(
                "device code reply",
                "device_code, user_code or verification_uri missing",
            )),
        }
    }

    /// Polls every `code.interval` (longer after `slow_down`) until the person has
    /// signed in, the code expires, or `cancelled()` says to stop.
    pub fn wait(&self, code: &DeviceCode, cancelled: &dyn Fn() -> bool) -> Result<LoginTokens> {
        let deadline = Instant::now() + code.expires_in;
        let mut interval = code.interval;
        let url = self.url("token");
        loop {
            let next = Instant::now() + interval;
            while Instant::now() < next {
                if cancelled() {
                    return Err(Error::Auth {
                        status: None,
                        code: None,
                        message: "the login was interrupted".to_owned(),
                        correlation_id: None,
                    });
                }
                std::thread::sleep(Duration::from_millis(50).min(interval));
            }
            if Instant::now() > deadline {
                return Err(expired());
            }
            let fields = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", self.client_id.as_str()),
                ("device_code", code.device_code.expose()),
            ];
            match post_token(&self.http, &url, &fields) {
                Ok((cached, Some(refresh))) => {
                    self.http.redactor().add(&refresh);
                    self.http.redactor().add(&cached.token);
                    return Ok(LoginTokens {
                        tenant: self.tenant.clone(),
                        client_id: self.client_id.clone(),
                        refresh_token: refresh,
                        access_token: Some(cached.token.clone()),
                        expires_at: cached.expires_at,
                    });
                }
                Ok((_, None)) => {
                    return Err(Error::Auth {
                        status: Some(200),
                        code: None,
                        message: "the sign-in gave no refresh token (is offline_access \
                                  allowed for the app?)"
                            .to_owned(),
                        correlation_id: None,
                    });
                }
                Err(Error::Auth { code: Some(c), .. }) if c == "authorization_pending" => {}
                Err(Error::Auth { code: Some(c), .. }) if c == "slow_down" => {
                    interval = (interval + Duration::from_secs(5)).min(MAX_INTERVAL);
                }
                Err(Error::Auth { code: Some(c), .. }) if c == "expired_token" => {
                    return Err(expired());
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn expired() -> Error {
    Error::Auth {
        status: None,
        code: Some("expired_token".to_owned()),
        message: "the code expired before the sign-in finished".to_owned(),
        correlation_id: None,
    }
}

/// What a token grants, read from its claims (never the token itself). Tokens that
/// are not JWTs show nothing but their expiry, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The sign-in method ([`Credential::method`](crate::Credential::method)).
    pub method: &'static str,
    /// Whether the token could be read (a JWT).
    pub readable: bool,
    /// Tenant id (`tid`).
    pub tenant: Option<String>,
    /// Application id (`appid` or `azp`).
    pub app_id: Option<String>,
    /// Application name (`app_displayname`).
    pub app_name: Option<String>,
    /// The signed-in person (`upn`, `unique_name` or `preferred_username`), for a
    /// delegated token.
    pub user: Option<String>,
    /// The API the token is for (`aud`).
    pub audience: Option<String>,
    /// Application permissions (`roles`).
    pub roles: Vec<String>,
    /// Delegated permissions (`scp`).
    pub scopes: Vec<String>,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
}

impl TokenInfo {
    /// Reads the claims of `token` (a JWT); its signature is not checked — only the
    /// service that issued it can do that.
    pub fn read(token: &str) -> TokenInfo {
        TokenInfo::from_token("token", token, None)
    }

    pub(crate) fn from_token(
        method: &'static str,
        token: &str,
        expires_at: Option<SystemTime>,
    ) -> TokenInfo {
        let Some(c) = claims(token) else {
            return TokenInfo {
                method,
                expires_at,
                ..TokenInfo::default()
            };
        };
        TokenInfo {
            method,
            readable: true,
            tenant: c.tid,
            app_id: c.appid.or(c.azp),
            app_name: c.app_displayname,
            user: c.upn.or(c.unique_name).or(c.preferred_username),
            audience: match c.aud {
                Some(serde_json::Value::String(s)) => Some(s),
                Some(serde_json::Value::Array(a)) => {
                    a.first().and_then(|v| v.as_str()).map(str::to_owned)
                }
                _ => None,
            },
            roles: c.roles,
            scopes: c
                .scp
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            expires_at: c
                .exp
                .map(|e| UNIX_EPOCH + Duration::from_secs(e))
                .or(expires_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &serde_json::Value) -> String {
        format!(
            "{}.{}.sig",
            crate::encode::base64url(br#"{"alg":"RS256","typ":"JWT"}"#),
            crate::encode::base64url(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn token_info_reads_app_and_delegated_tokens() {
        let app = jwt(&serde_json::json!({
            "aud": "https://api.securitycenter.microsoft.com",
            "tid": "tenant-1", "appid": "app-1", "app_displayname": "mdlr-responder",
            "roles": ["Machine.LiveResponse", "Machine.Read.All"], "exp": 2_000_000_000u64,
        }));
        let info = TokenInfo::from_token("client-secret", &app, None);
        assert!(info.readable);
        assert_eq!(info.tenant.as_deref(), Some("tenant-1"));
        assert_eq!(info.app_id.as_deref(), Some("app-1"));
        assert_eq!(info.app_name.as_deref(), Some("mdlr-responder"));
        assert_eq!(info.roles, ["Machine.LiveResponse", "Machine.Read.All"]);
        assert_eq!(
            info.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        let person = jwt(&serde_json::json!({
            "aud": ["https://api.security.microsoft.com"], "azp": "cli-app",
            "upn": "alice@contoso.com", "scp": "Machine.LiveResponse Machine.Read",
        }));
        let info = TokenInfo::from_token("device-code", &person, None);
        assert_eq!(info.user.as_deref(), Some("alice@contoso.com"));
        assert_eq!(info.app_id.as_deref(), Some("cli-app"));
        assert_eq!(info.scopes, ["Machine.LiveResponse", "Machine.Read"]);
        assert_eq!(
            info.audience.as_deref(),
            Some("https://api.security.microsoft.com")
        );
        let opaque = TokenInfo::from_token("token", "not-a-jwt", None);
        assert!(!opaque.readable);
        assert_eq!(opaque.tenant, None);
    }
}
