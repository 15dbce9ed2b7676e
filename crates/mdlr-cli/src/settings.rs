//! Second stage: command-line options plus the environment, resolved into what the
//! library needs. The only place that reads environment variables or credential files.

use std::path::Path;

use mdlr::{Cloud, Credential, Endpoints, Error, Secret};

use crate::args::Global;

/// Reads an environment variable; empty counts as unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty values treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Where the API, authority and scope are, from options, environment and cloud.
pub fn endpoints(global: &Global, env: Env<'_>) -> Result<Endpoints, Error> {
    let cloud: Cloud = match global.cloud.clone().or_else(|| env("MDLR_CLOUD")) {
        Some(name) => name.parse()?,
        None => Cloud::default(),
    };
    let mut endpoints = cloud.endpoints();
    if let Some(url) = global.api_url.clone().or_else(|| env("MDLR_API_URL")) {
        endpoints = endpoints.with_api_base(&url);
    }
    if let Some(url) = global
        .login_url
        .clone()
        .or_else(|| env("AZURE_AUTHORITY_HOST"))
    {
        endpoints.authority = url.trim().trim_end_matches('/').to_owned();
    }
    if let Some(scope) = global.scope.clone().or_else(|| env("MDLR_SCOPE")) {
        endpoints.scope = scope.trim().to_owned();
    }
    endpoints.validate()?;
    Ok(endpoints)
}

/// The credential, first match wins: `--token-file`, `MDLR_TOKEN`, then
/// `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET`.
pub fn credential(global: &Global, env: Env<'_>) -> Result<Credential, Error> {
    if let Some(path) = &global.token_file {
        return token_from_file(path);
    }
    if let Some(token) = env("MDLR_TOKEN") {
        return Ok(Credential::token(Secret::new(token.trim())));
    }
    let tenant = env("AZURE_TENANT_ID");
    let client = env("AZURE_CLIENT_ID");
    let secret = env("AZURE_CLIENT_SECRET");
    match (tenant, client, secret) {
        (Some(t), Some(c), Some(s)) => Ok(Credential::client_secret(t.trim(), c.trim(), s)),
        (None, None, None) => Err(Error::Config {
            message: "no credential: set MDLR_TOKEN (or pass --token-file PATH) to use a \
                      bearer token, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and \
                      AZURE_CLIENT_SECRET for an app registration"
                .to_owned(),
        }),
        (t, c, s) => {
            let missing: Vec<&str> = [
                ("AZURE_TENANT_ID", t.is_none()),
                ("AZURE_CLIENT_ID", c.is_none()),
                ("AZURE_CLIENT_SECRET", s.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| *n)
            .collect();
            Err(Error::Config {
                message: format!(
                    "incomplete app registration credential: {} not set",
                    missing.join(" and ")
                ),
            })
        }
    }
}

fn token_from_file(path: &Path) -> Result<Credential, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::Config {
        message: format!("cannot read token file {}: {e}", path.display()),
    })?;
    if meta.len() > 1 << 20 {
        return Err(Error::Config {
            message: format!("token file {} is larger than 1 MiB", path.display()),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
        message: format!("cannot read token file {}: {e}", path.display()),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::Config {
            message: format!("token file {} is empty", path.display()),
        });
    }
    Ok(Credential::token(Secret::new(token)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn endpoints_from_env_and_options() {
        let env = env_of(&[
            ("MDLR_CLOUD", "gcc-high"),
            ("MDLR_API_URL", "http://127.0.0.1:9/api/"),
        ]);
        let e = endpoints(&Global::default(), &env).expect("valid");
        assert_eq!(e.api_base, "http://127.0.0.1:9");
        assert_eq!(e.authority, "https://login.microsoftonline.us");
        let g = Global {
            cloud: Some("eu".into()),
            api_url: Some("https://x.example/".into()),
            ..Global::default()
        };
        let e = endpoints(&g, &env).expect("valid");
        assert_eq!(e.api_base, "https://x.example");
        assert_eq!(e.authority, "https://login.microsoftonline.com");
        let bad = Global {
            api_url: Some("http://api.example.com".into()),
            ..Global::default()
        };
        assert!(matches!(
            endpoints(&bad, &env_of(&[])),
            Err(Error::Config { .. })
        ));
        let unknown = Global {
            cloud: Some("moon".into()),
            ..Global::default()
        };
        assert!(matches!(
            endpoints(&unknown, &env_of(&[])),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn credential_order() {
        let all = env_of(&[
            ("MDLR_TOKEN", "tok"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]);
        let c = credential(&Global::default(), &all).expect("found");
        assert_eq!(c.method(), "token");
        let app = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]);
        assert_eq!(
            credential(&Global::default(), &app)
                .expect("found")
                .method(),
            "client-secret"
        );
        match credential(&Global::default(), &env_of(&[("AZURE_CLIENT_ID", "c")])) {
            Err(Error::Config { message }) => {
                assert!(
                    message.contains("AZURE_TENANT_ID and AZURE_CLIENT_SECRET"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        match credential(&Global::default(), &env_of(&[])) {
            Err(Error::Config { message }) => assert!(message.contains("MDLR_TOKEN")),
            other => panic!("{other:?}"),
        }
    }
}
