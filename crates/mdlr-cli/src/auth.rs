//! `mdlr login`, `mdlr logout` and `mdlr auth`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdlr::{Client, DeviceLogin, Error, TokenInfo};

use crate::args::Args;
use crate::output::{Failure, Output};
use crate::settings::{self, LoginStore};

/// The permission live response needs, as an app role or a delegated scope.
const LIVE_RESPONSE: &str = "Machine.LiveResponse";

/// Device-code sign-in: show the code, wait for the person, keep the tokens.
pub fn login(
    args: &Args,
    out: &Output,
    tenant: Option<&str>,
    client_id: Option<&str>,
) -> Result<u8, Failure> {
    let env = settings::process_env;
    let endpoints = settings::endpoints(&args.global, &env)?;
    let store = LoginStore::locate(&env)?;
    let tenant = tenant
        .map(str::to_owned)
        .or_else(|| env("AZURE_TENANT_ID"))
        .unwrap_or_else(|| "organizations".to_owned());
    let Some(client_id) = client_id
        .map(str::to_owned)
        .or_else(|| env("AZURE_CLIENT_ID"))
    else {
        return Err(Failure::from(Error::Config {
            message: "mdlr login needs the application (client) id of an app registration \
                      that allows public client flows and has the delegated \
                      Machine.LiveResponse permission: pass --client-id ID or set \
                      AZURE_CLIENT_ID"
                .to_owned(),
        }));
    };
    let authority = endpoints.authority.clone();
    let transport = crate::transport(args, out, Some((&endpoints, "device-code")))?;
    let device = DeviceLogin::new(endpoints, &transport, tenant.trim(), client_id.trim())?;
    let code = device.start()?;
    if args.global.json {
        out.json_line(&serde_json::json!({
            "user_code": code.user_code,
            "verification_uri": code.verification_uri,
            "expires_in": code.expires_in.as_secs(),
        }))?;
    }
    // The instructions go to stderr even with -q: without them nobody can sign in.
    eprintln!("{}", crate::output::clean(&code.message));
    let tokens = device.wait(&code, &|| false)?;
    store.save(&authority, &tokens)?;
    let who = tokens
        .access_token
        .as_ref()
        .map(|t| TokenInfo::read(t.expose()))
        .and_then(|i| i.user)
        .map_or_else(String::new, |u| format!(" as {u}"));
    out.note(&format!(
        "signed in{who}; the login is kept in {} (readable by you only). `mdlr logout` \
         removes it.",
        store.path.display()
    ));
    Ok(0)
}

/// Forgets the kept login.
pub fn logout(out: &Output) -> Result<u8, Failure> {
    let store = LoginStore::locate(&settings::process_env)?;
    if store.remove()? {
        out.note(&format!("removed the kept login {}", store.path.display()));
    } else {
        out.note("no login was kept");
    }
    Ok(0)
}

/// Which sign-in is used and what its token grants — never the token.
pub fn show(client: &Client, out: &Output) -> Result<u8, Failure> {
    let info = client.token_info()?;
    let expires = info.expires_at.map(describe_expiry);
    let live = info
        .roles
        .iter()
        .chain(&info.scopes)
        .any(|p| p == LIVE_RESPONSE);
    if out.json {
        out.json_line(&serde_json::json!({
            "method": info.method,
            "readable": info.readable,
            "tenant": info.tenant,
            "app_id": info.app_id,
            "app_name": info.app_name,
            "user": info.user,
            "audience": info.audience,
            "roles": info.roles,
            "scopes": info.scopes,
            "expires_at": info.expires_at.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            "live_response": live,
        }))?;
        return Ok(0);
    }
    let mut text = format!("sign-in   {}\n", info.method);
    if !info.readable {
        text.push_str("token     not a JWT: it cannot be read, only used\n");
    }
    let mut line = |label: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            text.push_str(&format!("{label:<10}{}\n", crate::output::clean(&v)));
        }
    };
    line("tenant", info.tenant.clone());
    line(
        "app",
        match (&info.app_name, &info.app_id) {
            (Some(n), Some(id)) => Some(format!("{n} ({id})")),
            (n, id) => n.clone().or(id.clone()),
        },
    );
    line("user", info.user.clone());
    line("audience", info.audience.clone());
    line("roles", Some(info.roles.join(", ")));
    line("scopes", Some(info.scopes.join(", ")));
    line("expires", expires);
    out.print(&text)?;
    if info.readable && !live {
        out.note(&format!(
            "the token does not carry {LIVE_RESPONSE}: live response commands will be \
             refused (403); grant the app or user that permission"
        ));
    }
    Ok(0)
}

/// `2026-11-28 01:23:45 UTC (in 59 min)`.
fn describe_expiry(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let when = format_utc(secs);
    match at.duration_since(SystemTime::now()) {
        Ok(left) => format!("{when} (in {})", human(left)),
        Err(e) => format!("{when} ({} ago)", human(e.duration())),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{} h {} min", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// Seconds since the epoch → `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(secs: u64) -> String {
    format!("{} UTC", crate::output::utc(secs, ' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_795_824_000 + 3_723), "2026-11-28 01:02:03 UTC");
        assert_eq!(human(Duration::from_secs(3_599)), "59 min");
        assert_eq!(human(Duration::from_secs(7_260)), "2 h 1 min");
    }
}
