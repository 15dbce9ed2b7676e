//! Second stage: command-line options plus the environment, resolved into what the
//! library needs. The only place that reads environment variables, credential files,
//! CA files and the kept login.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdlr::net::{Proxies, Proxy, certificates_from_pem};
use mdlr::{ClientCertificate, Cloud, Credential, Endpoints, Error, LoginTokens, Secret};

use crate::args::Global;

/// Reads an environment variable; empty counts as unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty values treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn config(message: impl Into<String>) -> Error {
    Error::Config {
        message: message.into(),
    }
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

/// The sign-in methods `--auth` / `MDLR_AUTH` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Auto,
    Token,
    ClientSecret,
    ClientCertificate,
    ManagedIdentity,
    AzureCli,
    DeviceCode,
}

pub const METHODS: &[&str] = &[
    "auto",
    "token",
    "client-secret",
    "client-certificate",
    "managed-identity",
    "azure-cli",
    "device-code",
];

impl Method {
    fn parse(name: &str) -> Result<Method, Error> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Method::Auto,
            "token" => Method::Token,
            "client-secret" => Method::ClientSecret,
            "client-certificate" => Method::ClientCertificate,
            "managed-identity" => Method::ManagedIdentity,
            "azure-cli" => Method::AzureCli,
            "device-code" => Method::DeviceCode,
            other => {
                return Err(config(format!(
                    "unknown sign-in method {other:?}: use one of {}",
                    METHODS.join(", ")
                )));
            }
        })
    }
}

/// The method asked for with `--auth` or `MDLR_AUTH` (default `auto`).
pub fn method(global: &Global, env: Env<'_>) -> Result<Method, Error> {
    match global.auth.clone().or_else(|| env("MDLR_AUTH")) {
        Some(name) => Method::parse(&name),
        None => Ok(Method::Auto),
    }
}

/// Called with a message when a rotated login cannot be kept.
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// The credential for `--auth` (see [`method`]). `auto` tries, first match wins: a
/// token (`--token-file`, `MDLR_TOKEN`), a client secret, a client certificate, the
/// login kept by `mdlr login` (for this authority), the Azure CLI (when `az` is in
/// `PATH`). Managed identity is used only when asked for.
pub fn credential(
    global: &Global,
    env: Env<'_>,
    endpoints: &Endpoints,
    warn: Warn,
) -> Result<Credential, Error> {
    let store = LoginStore::locate(env);
    match method(global, env)? {
        Method::Token => token(global, env)?
            .ok_or_else(|| config("--auth token: set MDLR_TOKEN or pass --token-file PATH")),
        Method::ClientSecret => client_secret(env)?.ok_or_else(|| {
            config(
                "--auth client-secret: set AZURE_TENANT_ID, AZURE_CLIENT_ID and \
                 AZURE_CLIENT_SECRET",
            )
        }),
        Method::ClientCertificate => client_certificate(env)?.ok_or_else(|| {
            config(
                "--auth client-certificate: set AZURE_TENANT_ID, AZURE_CLIENT_ID and \
                 AZURE_CLIENT_CERTIFICATE_PATH (a PEM file with the certificate and its \
                 private key)",
            )
        }),
        Method::ManagedIdentity => {
            let endpoint = env("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                .map(|u| u.trim().trim_end_matches('/').to_owned());
            Ok(Credential::ManagedIdentity {
                client_id: env("AZURE_CLIENT_ID").map(|c| c.trim().to_owned()),
                endpoint,
            })
        }
        Method::AzureCli => Ok(azure_cli(env)),
        Method::DeviceCode => {
            let store = store?;
            match store.load(endpoints)? {
                Some(tokens) => Ok(store.credential(tokens, warn)),
                None => Err(config(format!(
                    "--auth device-code: no login kept in {}: run `mdlr login` first",
                    store.path.display()
                ))),
            }
        }
        Method::Auto => {
            if let Some(c) = token(global, env)? {
                return Ok(c);
            }
            if let Some(c) = client_secret(env)? {
                return Ok(c);
            }
            if let Some(c) = client_certificate(env)? {
                return Ok(c);
            }
            if let Ok(store) = &store
                && let Some(tokens) = store.load(endpoints)?
            {
                return Ok(store.credential(tokens, warn));
            }
            if let Some(path) = env("PATH")
                && find_in_path(&path, "az").is_some()
            {
                return Ok(azure_cli(env));
            }
            Err(config(
                "no credential: set MDLR_TOKEN (or pass --token-file PATH) for a bearer \
                 token; AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or \
                 AZURE_CLIENT_CERTIFICATE_PATH) for an app registration; run `mdlr login` \
                 to sign in as yourself; sign in to the Azure CLI (`az login`); or use \
                 --auth managed-identity on an Azure VM",
            ))
        }
    }
}

fn token(global: &Global, env: Env<'_>) -> Result<Option<Credential>, Error> {
    if let Some(path) = &global.token_file {
        return token_from_file(path).map(Some);
    }
    Ok(env("MDLR_TOKEN").map(|t| Credential::token(Secret::new(t.trim()))))
}

/// An app registration: `None` when none of its variables is set, an error when only
/// some are.
fn app_registration(
    env: Env<'_>,
    credential_var: &str,
) -> Result<Option<(String, String, String)>, Error> {
    let tenant = env("AZURE_TENANT_ID");
    let client = env("AZURE_CLIENT_ID");
    let Some(value) = env(credential_var) else {
        return Ok(None);
    };
    match (tenant, client) {
        (Some(t), Some(c)) => Ok(Some((t.trim().to_owned(), c.trim().to_owned(), value))),
        (t, c) => {
            let missing: Vec<&str> = [
                ("AZURE_TENANT_ID", t.is_none()),
                ("AZURE_CLIENT_ID", c.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| *n)
            .collect();
            Err(config(format!(
                "incomplete app registration credential: {credential_var} is set but {} \
                 not",
                missing.join(" and ")
            )))
        }
    }
}

fn client_secret(env: Env<'_>) -> Result<Option<Credential>, Error> {
    Ok(app_registration(env, "AZURE_CLIENT_SECRET")?
        .map(|(t, c, s)| Credential::client_secret(t, c, Secret::new(s))))
}

fn client_certificate(env: Env<'_>) -> Result<Option<Credential>, Error> {
    let Some((tenant, client, path)) = app_registration(env, "AZURE_CLIENT_CERTIFICATE_PATH")?
    else {
        return Ok(None);
    };
    let path = PathBuf::from(path.trim());
    let pem = read_small(&path, 1 << 20, "certificate file")?;
    let certificate = ClientCertificate::from_pem(&pem)
        .map_err(|e| config(format!("certificate file {}: {e}", path.display())))?;
    Ok(Some(Credential::client_certificate(
        tenant,
        client,
        certificate,
    )))
}

fn azure_cli(env: Env<'_>) -> Credential {
    Credential::AzureCli {
        program: PathBuf::from("az"),
        tenant: env("AZURE_TENANT_ID").map(|t| t.trim().to_owned()),
    }
}

/// The first executable `name` in a `PATH`-style list.
pub fn find_in_path(path: &str, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn read_small(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
    let meta = std::fs::metadata(path)
        .map_err(|e| config(format!("cannot read {what} {}: {e}", path.display())))?;
    if meta.len() > limit {
        return Err(config(format!(
            "{what} {} is larger than {} KiB",
            path.display(),
            limit / 1024
        )));
    }
    std::fs::read(path).map_err(|e| config(format!("cannot read {what} {}: {e}", path.display())))
}

fn token_from_file(path: &Path) -> Result<Credential, Error> {
    let bytes = read_small(path, 1 << 20, "token file")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| config(format!("token file {} is not text", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(config(format!("token file {} is empty", path.display())));
    }
    Ok(Credential::token(Secret::new(token)))
}

/// The login `mdlr login` keeps: `$XDG_CONFIG_HOME/mdlr/login.json`, else
/// `$HOME/.config/mdlr/login.json`; readable by the user only.
pub struct LoginStore {
    pub path: PathBuf,
}

impl LoginStore {
    pub fn locate(env: Env<'_>) -> Result<LoginStore, Error> {
        let base = match (env("XDG_CONFIG_HOME"), env("HOME")) {
            (Some(x), _) if Path::new(&x).is_absolute() => PathBuf::from(x),
            (_, Some(h)) => Path::new(&h).join(".config"),
            _ => {
                return Err(config(
                    "cannot tell where to keep the login: neither XDG_CONFIG_HOME nor HOME \
                     is set",
                ));
            }
        };
        Ok(LoginStore {
            path: base.join("mdlr").join("login.json"),
        })
    }

    /// The kept login for `endpoints`' authority, if there is one.
    pub fn load(&self, endpoints: &Endpoints) -> Result<Option<LoginTokens>, Error> {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(config(format!(
                    "cannot read the kept login {}: {e}",
                    self.path.display()
                )));
            }
        };
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(config(format!(
                "the kept login {} can be read by other users; run `chmod 600 {}` or \
                 `mdlr logout`",
                self.path.display(),
                self.path.display()
            )));
        }
        let bytes = read_small(&self.path, 1 << 20, "kept login")?;
        let bad = || {
            config(format!(
                "the kept login {} is damaged; run `mdlr login` again",
                self.path.display()
            ))
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        if field("authority").as_deref() != Some(endpoints.authority.trim_end_matches('/')) {
            return Ok(None);
        }
        let (Some(tenant), Some(client_id), Some(refresh)) =
            (field("tenant"), field("client_id"), field("refresh_token"))
        else {
            return Err(bad());
        };
        Ok(Some(LoginTokens {
            tenant,
            client_id,
            refresh_token: Secret::new(refresh),
            access_token: field("access_token").map(Secret::new),
            expires_at: v
                .get("expires_at")
                .and_then(|x| x.as_u64())
                .map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        }))
    }

    /// Keeps `tokens` for `authority`: written to a private temporary file beside it,
    /// then renamed, in a directory only the user can enter.
    pub fn save(&self, authority: &str, tokens: &LoginTokens) -> Result<(), Error> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |op: &'static str, path: &Path, e: std::io::Error| Error::Io {
            path: path.to_owned(),
            op,
            source: e,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("create", dir, e))?;
        let doc = serde_json::json!({
            "version": 1,
            "authority": authority.trim_end_matches('/'),
            "tenant": tokens.tenant,
            "client_id": tokens.client_id,
            "refresh_token": tokens.refresh_token.expose(),
            "access_token": tokens.access_token.as_ref().map(|t| t.expose()),
            "expires_at": tokens.expires_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            "saved_at": SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        let temp = dir.join(format!(".login.json.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| io("create", &temp, e))?;
        let written = file
            .write_all(doc.to_string().as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io("write", &temp, e));
        }
        std::fs::rename(&temp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            io("rename", &self.path, e)
        })
    }

    /// Removes the kept login; whether there was one.
    pub fn remove(&self) -> Result<bool, Error> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io {
                path: self.path.clone(),
                op: "remove",
                source: e,
            }),
        }
    }

    /// The login credential; rotated tokens are written back (a failure only warns).
    fn credential(&self, tokens: LoginTokens, warn: Warn) -> Credential {
        let path = self.path.clone();
        let sink = move |t: &LoginTokens| {
            let store = LoginStore { path: path.clone() };
            // The authority is in the file already; keep it.
            let authority = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    v.get("authority")
                        .and_then(|a| a.as_str())
                        .map(str::to_owned)
                });
            let saved = match authority {
                Some(a) => store.save(&a, t),
                None => Err(config("the kept login disappeared")),
            };
            if let Err(e) = saved {
                warn(&format!(
                    "could not keep the renewed login in {}: {e}",
                    path.display()
                ));
            }
        };
        Credential::login(tokens, Some(Arc::new(sink)))
    }
}

/// Where mdlr keeps the quota state its processes share (`--no-shared-quotas` turns it
/// off): `$XDG_RUNTIME_DIR/mdlr` (private to the user, and gone at logout), else
/// `$XDG_CACHE_HOME/mdlr`, else `$HOME/.cache/mdlr`, made with mode 700 if missing. The
/// library names the file in it by API host, tenant and application. `None` when none
/// of the variables is set; why not when the directory cannot be used (it cannot be
/// made, or others may write in it).
pub fn quota_dir(env: Env<'_>) -> Result<Option<PathBuf>, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let absolute = |name: &str| env(name).filter(|v| Path::new(v).is_absolute());
    let dir = if let Some(runtime) = absolute("XDG_RUNTIME_DIR") {
        Path::new(&runtime).join("mdlr")
    } else if let Some(cache) = absolute("XDG_CACHE_HOME") {
        Path::new(&cache).join("mdlr")
    } else if let Some(home) = absolute("HOME") {
        Path::new(&home).join(".cache").join("mdlr")
    } else {
        return Ok(None);
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let meta =
        std::fs::metadata(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "{} may be written by other users; run `chmod 700 {}`",
            dir.display(),
            dir.display()
        ));
    }
    Ok(Some(dir))
}

/// Proxies and extra CAs, from `--proxy`/`--no-proxy`/`--ca-cert` and the variables
/// curl reads: `https_proxy`/`HTTPS_PROXY` for https URLs, `http_proxy`/`HTTP_PROXY` for
/// http URLs, `all_proxy`/`ALL_PROXY` for both when those are unset, `no_proxy`/`NO_PROXY`
/// for hosts reached directly, and `SSL_CERT_FILE` for a CA bundle.
pub fn network(global: &Global, env: Env<'_>) -> Result<(Proxies, Vec<Vec<u8>>), Error> {
    let either = |lower: &str, upper: &str| {
        env(lower)
            .map(|v| (lower.to_owned(), v))
            .or_else(|| env(upper).map(|v| (upper.to_owned(), v)))
    };
    let parse = |(name, value): (String, String)| {
        Proxy::new(&value).map_err(|e| config(format!("{name}: {e}")))
    };
    let no_proxy = either("no_proxy", "NO_PROXY")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let proxies = if global.no_proxy {
        Proxies::none()
    } else if let Some(url) = &global.proxy {
        Proxies::all(Proxy::new(url).map_err(|e| config(format!("--proxy: {e}")))?)
            .no_proxy(&no_proxy)
    } else {
        let all = either("all_proxy", "ALL_PROXY");
        let https = either("https_proxy", "HTTPS_PROXY").or_else(|| all.clone());
        let http = either("http_proxy", "HTTP_PROXY").or(all);
        Proxies::none()
            .https(https.map(parse).transpose()?)
            .http(http.map(parse).transpose()?)
            .no_proxy(&no_proxy)
    };
    let ca = match (&global.ca_cert, env("SSL_CERT_FILE")) {
        (Some(path), _) => Some((path.clone(), "--ca-cert")),
        (None, Some(path)) => Some((PathBuf::from(path), "SSL_CERT_FILE")),
        (None, None) => None,
    };
    let roots = match ca {
        Some((path, from)) => {
            let pem = read_small(&path, 16 << 20, "CA file")?;
            certificates_from_pem(&pem)
                .map_err(|e| config(format!("{from} {}: {e}", path.display())))?
        }
        None => Vec::new(),
    };
    Ok((proxies, roots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn quiet() -> Warn {
        Arc::new(|_: &str| {})
    }

    fn cred(global: &Global, env: &dyn Fn(&str) -> Option<String>) -> Result<Credential, Error> {
        credential(global, env, &Endpoints::default(), quiet())
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
        let c = cred(&Global::default(), &all).expect("found");
        assert_eq!(c.method(), "token");
        let app = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]);
        assert_eq!(
            cred(&Global::default(), &app).expect("found").method(),
            "client-secret"
        );
        match cred(&Global::default(), &env_of(&[("AZURE_CLIENT_SECRET", "s")])) {
            Err(Error::Config { message }) => {
                assert!(
                    message.contains("AZURE_TENANT_ID and AZURE_CLIENT_ID"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        match cred(&Global::default(), &env_of(&[("HOME", "/nonexistent")])) {
            Err(Error::Config { message }) => {
                assert!(message.contains("MDLR_TOKEN"), "{message}");
                assert!(message.contains("mdlr login"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // The method can be forced, and then its own settings are required.
        let forced = Global {
            auth: Some("client-secret".into()),
            ..Global::default()
        };
        assert!(matches!(
            cred(&forced, &env_of(&[("MDLR_TOKEN", "tok")])),
            Err(Error::Config { .. })
        ));
        let mi = cred(
            &Global::default(),
            &env_of(&[
                ("MDLR_AUTH", "managed-identity"),
                ("AZURE_CLIENT_ID", "uai"),
            ]),
        )
        .expect("managed identity");
        assert_eq!(mi.method(), "managed-identity");
        assert!(matches!(
            cred(&Global::default(), &env_of(&[("MDLR_AUTH", "kerberos")])),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn azure_cli_is_found_in_path_only_when_there() {
        let dir = std::env::temp_dir().join(format!("mdlr-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let env_without = env_of(&[
            ("PATH", dir.to_str().expect("utf-8")),
            ("HOME", "/nonexistent"),
        ]);
        assert!(cred(&Global::default(), &env_without).is_err());
        let az = dir.join("az");
        std::fs::write(&az, "#!/bin/sh\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let c = cred(&Global::default(), &env_without).expect("az found");
        assert_eq!(c.method(), "azure-cli");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn proxies_from_the_environment_like_curl() {
        let (p, roots) = network(
            &Global::default(),
            &env_of(&[
                ("HTTPS_PROXY", "http://secure:3128"),
                ("http_proxy", "plain:8080"),
                ("NO_PROXY", "internal.example"),
            ]),
        )
        .expect("valid");
        assert!(roots.is_empty());
        assert_eq!(
            p.for_url("https://api.security.microsoft.com/")
                .map(|p| p.display()),
            Some("http://secure:3128")
        );
        assert_eq!(
            p.for_url("http://127.0.0.1:9/").map(|p| p.display()),
            Some("http://plain:8080")
        );
        assert_eq!(p.for_url("https://a.internal.example/"), None);
        // ALL_PROXY fills in; --no-proxy turns everything off; --proxy wins.
        let env = env_of(&[("ALL_PROXY", "http://all:1")]);
        let (p, _) = network(&Global::default(), &env).expect("valid");
        assert_eq!(
            p.for_url("https://x.example/").map(|p| p.display()),
            Some("http://all:1")
        );
        let off = Global {
            no_proxy: true,
            ..Global::default()
        };
        assert!(network(&off, &env).expect("valid").0.is_empty());
        let given = Global {
            proxy: Some("http://given:2".into()),
            ..Global::default()
        };
        let (p, _) = network(&given, &env).expect("valid");
        assert_eq!(
            p.for_url("https://x.example/").map(|p| p.display()),
            Some("http://given:2")
        );
        match network(
            &Global::default(),
            &env_of(&[("HTTPS_PROXY", "socks5://s:1")]),
        ) {
            Err(Error::Config { message }) => {
                assert!(message.starts_with("HTTPS_PROXY"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn login_store_round_trip_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mdlr-login-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let env = env_of(&[("XDG_CONFIG_HOME", dir.to_str().expect("utf-8"))]);
        let store = LoginStore::locate(&env).expect("located");
        assert_eq!(store.path, dir.join("mdlr/login.json"));
        let endpoints = Endpoints::default();
        assert!(store.load(&endpoints).expect("no file").is_none());
        let tokens = LoginTokens {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "app".into(),
            refresh_token: Secret::new("r-1"),
            access_token: Some(Secret::new("a-1")),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)),
        };
        store.save(&endpoints.authority, &tokens).expect("saved");
        let mode = std::fs::metadata(&store.path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(dir.join("mdlr"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let back = store.load(&endpoints).expect("reads").expect("kept");
        assert_eq!(back.refresh_token.expose(), "r-1");
        assert_eq!(back.tenant, "contoso.onmicrosoft.com");
        assert_eq!(back.expires_at, tokens.expires_at);
        // Another cloud's authority does not use it.
        let other = Cloud::GccHigh.endpoints();
        assert!(store.load(&other).expect("reads").is_none());
        // Readable by others: refused.
        std::fs::set_permissions(&store.path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert!(matches!(store.load(&endpoints), Err(Error::Config { .. })));
        assert!(store.remove().expect("removed"));
        assert!(!store.remove().expect("nothing left"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn quota_dir_is_the_runtime_dir_else_the_cache() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mdlr-quota-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let at = |name: &str| dir.join(name).to_str().expect("utf-8").to_owned();
        let (run, cache, home) = (at("run"), at("cache"), at("home"));
        let all = env_of(&[
            ("XDG_RUNTIME_DIR", &run),
            ("XDG_CACHE_HOME", &cache),
            ("HOME", &home),
        ]);
        assert_eq!(quota_dir(&all), Ok(Some(dir.join("run/mdlr"))));
        let mode = |p: PathBuf| std::fs::metadata(p).expect("made").permissions().mode() & 0o777;
        assert_eq!(mode(dir.join("run/mdlr")), 0o700);
        let no_runtime = env_of(&[("XDG_CACHE_HOME", &cache), ("HOME", &home)]);
        assert_eq!(quota_dir(&no_runtime), Ok(Some(dir.join("cache/mdlr"))));
        // A relative XDG variable does not count, as the XDG spec has it.
        let home_only = env_of(&[("XDG_RUNTIME_DIR", "run"), ("HOME", &home)]);
        assert_eq!(
            quota_dir(&home_only),
            Ok(Some(dir.join("home/.cache/mdlr")))
        );
        assert_eq!(quota_dir(&env_of(&[])), Ok(None));
        // A directory others may write in is not used.
        std::fs::set_permissions(
            dir.join("cache/mdlr"),
            std::fs::Permissions::from_mode(0o777),
        )
        .expect("chmod");
        let refused = quota_dir(&no_runtime).expect_err("refused");
        assert!(refused.contains("chmod 700"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
