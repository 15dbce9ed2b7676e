//! Prints the transcript of a finished RunScript command: the script's output to stdout,
//! its errors to stderr, and exits with the script's exit code (like `ssh`; 1 when the
//! transcript cannot be had, with the reason on stderr).
//!
//! ```text
//! MDLR_API_URL=https://api.security.microsoft.com MDLR_TOKEN=... \
//!     cargo run -p mdlr --example transcript -- ACTION_ID 0
//! ```

use mdlr::{Client, Credential, Endpoints};

fn main() {
    let code = run().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        1
    });
    std::process::exit(code.into());
}

fn run() -> Result<u8, Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [action_id, index] = &args[..] else {
        return Err("usage: transcript ACTION_ID INDEX".into());
    };
    let index = index
        .parse()
        .map_err(|_| format!("INDEX is not a number: {index}"))?;
    let client = Client::builder(Credential::token(env("MDLR_TOKEN")?))
        .endpoints(Endpoints::default().with_api_base(&env("MDLR_API_URL")?))
        .build()?;
    // A fresh result link, the download and the (tolerant) parse, in one call.
    let transcript = client.transcript(action_id, index)?;
    print!("{}", transcript.script_output);
    eprint!("{}", transcript.script_errors);
    Ok(transcript.exit_status())
}
