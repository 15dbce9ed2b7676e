//! Runs a library script on several machines at once (given by DNS name or machine id),
//! within the service's quotas, waits for every action to end and prints how each
//! machine's part ended, one `NAME: OUTCOME` line per machine, sorted by name.
//!
//! ```text
//! MDLR_API_URL=https://api.security.microsoft.com MDLR_TOKEN=... \
//!     cargo run -p mdlr --example batch -- collect.ps1 host1.contoso.com host2.contoso.com
//! ```

use mdlr::{Client, Credential, Endpoints, LiveResponse};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((script, machines)) = args.split_first().filter(|(_, m)| !m.is_empty()) else {
        return Err("usage: batch SCRIPT MACHINE...".into());
    };
    let client = Client::builder(Credential::token(env("MDLR_TOKEN")?))
        .endpoints(Endpoints::default().with_api_base(&env("MDLR_API_URL")?))
        .build()?;
    // Every name must name exactly one machine, or nothing starts.
    let targets = client.resolve_targets(machines)?;
    let request = LiveResponse::new("mdlr batch example").run_script(script, "");
    let (mut reports, _stats) = client.batch(request).targets(targets).collect();
    reports.sort_by(|a, b| a.target.name.cmp(&b.target.name));
    for report in reports {
        println!("{}: {report}", report.target.name);
    }
    Ok(())
}
