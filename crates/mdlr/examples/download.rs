//! Downloads the result of a finished command into a directory, under the name the
//! result host gives it (a GetFile result un-gzipped, as collected), and prints the
//! saved file's path.
//!
//! ```text
//! MDLR_API_URL=https://api.security.microsoft.com MDLR_TOKEN=... \
//!     cargo run -p mdlr --example download -- ACTION_ID 0 evidence/
//! ```

use mdlr::{Client, Credential, DownloadRequest, Endpoints};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [action_id, index, dir] = &args[..] else {
        return Err("usage: download ACTION_ID INDEX DIR".into());
    };
    let index = index
        .parse()
        .map_err(|_| format!("INDEX is not a number: {index}"))?;
    let client = Client::builder(Credential::token(env("MDLR_TOKEN")?))
        .endpoints(Endpoints::default().with_api_base(&env("MDLR_API_URL")?))
        .build()?;
    // Streams to a hidden partial file, verifies, then renames; never overwrites.
    let done = client.download_result(action_id, index, &DownloadRequest::to_dir(dir))?;
    println!("{}", done.path.display());
    Ok(())
}
