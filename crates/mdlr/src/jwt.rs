//! JSON Web Tokens: reading the claims of an access token (for display and expiry, never
//! trusted for anything else) and signing the client assertion of certificate sign-in.

use serde::Deserialize;

use crate::encode::{base64url, base64url_decode};
use crate::error::{Error, Result};

/// The claims mdlr reads from an access token.
#[derive(Deserialize, Default)]
pub(crate) struct Claims {
    pub(crate) exp: Option<u64>,
    pub(crate) tid: Option<String>,
    pub(crate) appid: Option<String>,
    pub(crate) azp: Option<String>,
    pub(crate) app_displayname: Option<String>,
    pub(crate) upn: Option<String>,
    pub(crate) unique_name: Option<String>,
    pub(crate) preferred_username: Option<String>,
    pub(crate) aud: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    pub(crate) scp: Option<String>,
}

/// The claims of a JWT, without checking its signature (only the API can).
pub(crate) fn claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64url_decode(payload)?;
    serde_json::from_slice(&bytes).ok()
}

/// Lifetime of a client assertion (Entra ID accepts up to 10 minutes).
const ASSERTION_LIFETIME: u64 = 540;

/// A client assertion for certificate sign-in: RS256 over the header (with the
/// certificate's SHA-1 thumbprint as `x5t`) and the claims Entra ID asks for (`aud` the
/// token URL, `iss` = `sub` the client id, a fresh `jti`, valid 9 minutes).
pub(crate) fn client_assertion(
    key: &ring::signature::RsaKeyPair,
    certificate_der: &[u8],
    client_id: &str,
    audience: &str,
) -> Result<String> {
    let x5t = base64url(
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, certificate_der).as_ref(),
    );
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": x5t});
    let now = crate::time::unix_now();
    let claims = serde_json::json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": random_id()?,
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &rng,
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| Error::config("signing the client assertion failed"))?;
    Ok(format!("{signing_input}.{}", base64url(&signature)))
}

/// A version-4-style random id for `jti`.
fn random_id() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::config("the system's random generator failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_uuid_shaped_and_differ() {
        let a = random_id().expect("random");
        let b = random_id().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn claims_of_a_token() {
        let token = format!(
            "{}.{}.sig",
            base64url(br#"{"alg":"RS256"}"#),
            base64url(br#"{"exp":7,"tid":"t","roles":["A"]}"#)
        );
        let c = claims(&token).expect("claims");
        assert_eq!((c.exp, c.tid.as_deref()), (Some(7), Some("t")));
        assert_eq!(c.roles, ["A"]);
        assert!(claims("opaque").is_none());
    }
}
