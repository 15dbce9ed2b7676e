//! Azurite, Microsoft's Azure Storage emulator (npm package `azurite`), as the result
//! host of the transfer tests: real blobs, real `Range` and `If-Match` handling and
//! real SAS links that expire.
//!
//! [`azurite`] starts its blob service once per test process on `127.0.0.1` (in memory,
//! no telemetry) and stops it when the process ends, however it ends: Azurite runs under
//! a small `sh` that holds a pipe from this process on its standard input and kills
//! Azurite when that pipe closes, so no emulator outlives the test binary, not even one
//! killed with `SIGKILL`.
//!
//! The executable is `$MDLR_AZURITE`, else `<workspace>/target/tools/node_modules/.bin/
//! azurite-blob` (where `cargo xtask test` installs it), else `azurite-blob` on `PATH`.
//! Without one, [`azurite`] panics with [`NOT_INSTALLED`]: a test that needs Azurite
//! fails, it never passes silently.
//!
//! Blobs are written with Shared Key authentication ([`Azurite::put_blob`],
//! [`Azurite::put_blob_blocks`]) and read through service SAS links
//! ([`sas_query`]), both signed with the public key of the emulator's
//! development account [`ACCOUNT`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::PAD_INDIFFERENT;

use crate::server::percent_encode;
use crate::util::{base64, civil_from_days, iso_short};

/// What a test that needs Azurite says when there is none.
pub const NOT_INSTALLED: &str =
    "Azurite is not installed: run `cargo xtask test` (it installs it) or set MDLR_AZURITE";

/// The emulator's development account.
pub const ACCOUNT: &str = "devstoreaccount1";

/// The development account's key (public, the same in every Azurite).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The storage service version of our requests and SAS links (`sv=`).
pub const VERSION: &str = "2021-08-06";

/// How long Azurite may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The running emulator: its blob service's address.
pub struct Azurite {
    addr: SocketAddr,
    /// The wrapper's standard input: Azurite stops when it closes (at process exit).
    _stdin: Mutex<ChildStdin>,
    _wrapper: Mutex<Child>,
}

/// Properties of a blob being written.
#[derive(Debug, Clone, Default)]
pub struct BlobProps {
    /// `Content-Disposition`, as the result host of a GetFile result sends it
    /// (`attachment; filename="x.txt.gz"`).
    pub content_disposition: Option<String>,
    /// The stored `Content-MD5` (base64). [`Azurite::put_blob`] stores the MD5 of the
    /// bytes when this is `None`; give a wrong one to test the check.
    pub content_md5: Option<String>,
    /// `Content-Type` (default `application/octet-stream`).
    pub content_type: Option<String>,
}

impl BlobProps {
    /// A GetFile result's properties: `attachment; filename="NAME"`.
    pub fn attachment(name: &str) -> BlobProps {
        BlobProps {
            content_disposition: Some(format!("attachment; filename=\"{name}\"")),
            ..BlobProps::default()
        }
    }
}

/// A reply from Azurite.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn expect(self, status: u16, what: &str) -> Reply {
        assert_eq!(
            self.status,
            status,
            "Azurite: {what}: {:?}\n{}",
            self.header("x-ms-error-code"),
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

/// The emulator of this test process, started on first use.
///
/// # Panics
///
/// With [`NOT_INSTALLED`] when no executable is found, or when it does not start.
pub fn azurite() -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(|| {
        let exe = executable().unwrap_or_else(|| match std::env::var_os("MDLR_AZURITE") {
            Some(p) if !p.is_empty() => {
                panic!(
                    "{NOT_INSTALLED} (MDLR_AZURITE={} is not a file)",
                    p.display()
                )
            }
            _ => panic!("{NOT_INSTALLED}"),
        });
        Azurite::start(&exe)
    })
}

/// Where the `azurite-blob` executable is: `$MDLR_AZURITE`, the workspace's
/// `target/tools`, or `PATH`.
pub fn executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MDLR_AZURITE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools/node_modules/.bin/azurite-blob");
    if tools.is_file() {
        return Some(tools);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("azurite-blob"))
        .find(|p| p.is_file())
}

/// The shell that runs Azurite, writes its pid to `$1/pid` and kills it when its own
/// standard input closes. `$1` is the scratch directory, the rest is Azurite's
/// command line.
const WRAPPER: &str = r#"dir=$1; shift
"$@" >"$dir/azurite.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/pid"
read _ignored
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir""#;

impl Azurite {
    /// Starts Azurite on a free port (trying another if the one picked was taken in the
    /// meantime) and waits until it answers.
    fn start(exe: &Path) -> Azurite {
        let mut failures = Vec::new();
        for attempt in 0..3 {
            match Azurite::try_start(exe, attempt) {
                Ok(azurite) => return azurite,
                Err(why) => failures.push(why),
            }
        }
        panic!("{} did not start:\n{}", exe.display(), failures.join("\n"));
    }

    fn try_start(exe: &Path, attempt: u32) -> Result<Azurite, String> {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            l.local_addr().expect("local address").port()
        };
        let dir =
            std::env::temp_dir().join(format!("mdlr-azurite-{}-{attempt}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create Azurite's directory");
        let mut wrapper = Command::new("sh")
            .args(["-c", WRAPPER, "azurite"])
            .arg(&dir)
            .arg(exe)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--disableTelemetry"])
            .args(["--skipApiVersionCheck", "--loose", "--silent"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh to start {}: {e}", exe.display()));
        let stdin = wrapper.stdin.take().expect("the wrapper's stdin");
        // Dropped on failure: the wrapper sees its stdin close and stops Azurite.
        let azurite = Azurite {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _stdin: Mutex::new(stdin),
            _wrapper: Mutex::new(wrapper),
        };
        let started = Instant::now();
        loop {
            // Any HTTP reply will do (an unsigned request gets 403).
            if azurite.request("GET", "/?comp=list", &[], &[]).is_ok() {
                return Ok(azurite);
            }
            let log = || std::fs::read_to_string(dir.join("azurite.log")).unwrap_or_default();
            // Linux tells whether the process is still there (a zombie is not: the
            // wrapper reaps it only at the end); elsewhere the timeout does.
            let pid = std::fs::read_to_string(dir.join("pid")).unwrap_or_default();
            let pid = pid.trim();
            if !pid.is_empty() && Path::new("/proc/self/stat").exists() {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next());
                if matches!(state, None | Some('Z' | 'X')) {
                    return Err(format!("it ended (port {port}):\n{}", log()));
                }
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "no answer on port {port} after {START_TIMEOUT:?}:\n{}",
                    log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The blob service's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The path of a blob: `/devstoreaccount1/CONTAINER/BLOB`.
    pub fn blob_path(container: &str, blob: &str) -> String {
        format!("/{ACCOUNT}/{container}/{blob}")
    }

    /// A read-only SAS link to a blob on this emulator, valid until `expiry`.
    pub fn sas_url(&self, container: &str, blob: &str, expiry: SystemTime) -> String {
        format!(
            "{}{}?{}",
            self.url(),
            Azurite::blob_path(container, blob),
            sas_query(container, blob, expiry)
        )
    }

    /// Creates a container (an existing one is fine).
    pub fn create_container(&self, container: &str) {
        let reply = self.signed(
            "PUT",
            &format!("/{container}"),
            &[("restype", "container")],
            &[],
            &[],
        );
        if reply.status != 409 {
            reply.expect(201, "create container");
        }
    }

    /// Writes a blob in one Put Blob; returns its ETag. Azurite stores the MD5 of
    /// `body`, unless `props.content_md5` gives one: then the blob is written as one
    /// block ([`Azurite::put_blob_blocks`]), as Put Blob refuses an MD5 that does not
    /// match.
    pub fn put_blob(&self, container: &str, blob: &str, body: &[u8], props: &BlobProps) -> String {
        if props.content_md5.is_some() {
            return self
                .put_blob_blocks(container, blob, body, body.len().max(1), props)
                .0;
        }
        let mut headers = vec![("x-ms-blob-type", "BlockBlob".to_owned())];
        headers.extend(props_headers(props));
        let reply = self.signed("PUT", &format!("/{container}/{blob}"), &[], &headers, body);
        etag(reply.expect(201, "put blob"))
    }

    /// Writes a blob from `body` in blocks of `block` bytes (Put Block, then Put Block
    /// List), holding one block in memory at a time; returns the ETag and the length.
    /// Only `props.content_md5` is stored as MD5 (unchecked): the service computes
    /// none here.
    pub fn put_blob_blocks(
        &self,
        container: &str,
        blob: &str,
        mut body: impl Read,
        block: usize,
        props: &BlobProps,
    ) -> (String, u64) {
        let path = format!("/{container}/{blob}");
        let mut ids = Vec::new();
        let mut buf = vec![0u8; block];
        let mut total = 0u64;
        loop {
            let n = read_full(&mut body, &mut buf).expect("read the blob's bytes");
            if n == 0 {
                break;
            }
            let id = base64(format!("block-{:08}", ids.len()).as_bytes());
            self.signed(
                "PUT",
                &path,
                &[("comp", "block"), ("blockid", &id)],
                &[],
                &buf[..n],
            )
            .expect(201, "put block");
            ids.push(id);
            total += n as u64;
            if n < block {
                break;
            }
        }
        let list: String = ids
            .iter()
            .map(|id| format!("<Latest>{id}</Latest>"))
            .collect();
        let xml =
            format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>{list}</BlockList>");
        let reply = self.signed(
            "PUT",
            &path,
            &[("comp", "blocklist")],
            &props_headers(props),
            xml.as_bytes(),
        );
        (etag(reply.expect(201, "put block list")), total)
    }

    /// A GET of `url` (on this emulator or a proxy in front of it) with extra
    /// `headers` (for `Range`, `If-Match`); no credentials.
    pub fn get(url: &str, headers: &[(&str, &str)]) -> io::Result<Reply> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr: SocketAddr = host
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let headers: Vec<(&str, String)> =
            headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        exchange(addr, "GET", target, &headers, &[])
    }

    /// A request signed with the account key (Shared Key) to `/devstoreaccount1` +
    /// `path` with the (unencoded) `query` parameters.
    pub fn signed(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, String)],
        body: &[u8],
    ) -> Reply {
        let path = format!("/{ACCOUNT}{path}");
        let mut all: Vec<(&str, String)> = vec![
            ("x-ms-date", http_date(SystemTime::now())),
            ("x-ms-version", VERSION.to_owned()),
        ];
        all.extend(headers.iter().map(|(k, v)| (*k, v.clone())));
        let get = |name: &str| {
            all.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let length = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        let mut ms: Vec<(String, String)> = all
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ms-"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        ms.sort();
        let mut params: Vec<(String, &str)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), *v))
            .collect();
        params.sort();
        let mut to_sign = [
            method,
            &get("Content-Encoding"),
            &get("Content-Language"),
            &length,
            &get("Content-MD5"),
            &get("Content-Type"),
            "", // Date: x-ms-date is used instead
            &get("If-Modified-Since"),
            &get("If-Match"),
            &get("If-None-Match"),
            &get("If-Unmodified-Since"),
            &get("Range"),
        ]
        .join("\n");
        to_sign.push('\n');
        for (k, v) in &ms {
            to_sign.push_str(&format!("{k}:{v}\n"));
        }
        to_sign.push_str(&format!("/{ACCOUNT}{path}"));
        for (k, v) in &params {
            to_sign.push_str(&format!("\n{k}:{v}"));
        }
        let signature = base64(&hmac_sha256(&account_key(), to_sign.as_bytes()));
        all.push(("Authorization", format!("SharedKey {ACCOUNT}:{signature}")));
        let mut target = path;
        for (i, (k, v)) in query.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            target.push_str(&format!("{}={}", percent_encode(k), percent_encode(v)));
        }
        exchange(self.addr, method, &target, &all, body)
            .unwrap_or_else(|e| panic!("Azurite: {method} {target}: {e}"))
    }

    fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> io::Result<Reply> {
        exchange(self.addr, method, target, headers, body)
    }
}

/// The query of a read-only service SAS for one blob (`sp=r`, `sr=b`), valid until
/// `expiry` (to the second), signed with the development account's key.
pub fn sas_query(container: &str, blob: &str, expiry: SystemTime) -> String {
    let se = iso_short(expiry);
    let resource = format!("/blob/{ACCOUNT}/{container}/{blob}");
    // Version 2020-12-06 and later: sp, st, se, resource, si, sip, spr, sv, sr,
    // snapshot time, encryption scope, rscc, rscd, rsce, rscl, rsct.
    let to_sign = [
        "r", "", &se, &resource, "", "", "", VERSION, "b", "", "", "", "", "", "", "",
    ]
    .join("\n");
    let sig = base64(&hmac_sha256(&account_key(), to_sign.as_bytes()));
    format!(
        "sv={VERSION}&sr=b&sp=r&se={}&sig={}",
        percent_encode(&se),
        percent_encode(&sig)
    )
}

/// The account key's bytes.
fn account_key() -> Vec<u8> {
    base64_decode(ACCOUNT_KEY).expect("the account key is base64")
}

/// HMAC-SHA256 (RFC 2104), ring's.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), message);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Standard base64, padded or not, leftover bits ignored; `None` for other characters
/// and for a length or padding no encoder makes.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        PAD_INDIFFERENT.with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(text).ok()
}

/// `t` as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn props_headers(props: &BlobProps) -> Vec<(&'static str, String)> {
    let mut headers = vec![(
        "x-ms-blob-content-type",
        props
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
    )];
    if let Some(d) = &props.content_disposition {
        headers.push(("x-ms-blob-content-disposition", d.clone()));
    }
    if let Some(md5) = &props.content_md5 {
        headers.push(("x-ms-blob-content-md5", md5.clone()));
    }
    headers
}

fn etag(reply: Reply) -> String {
    reply
        .header("etag")
        .expect("Azurite sends an ETag")
        .to_owned()
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`), the reply read
/// to the end.
fn exchange(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> io::Result<Reply> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete reply head"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_dates() {
        for n in 0..70u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64(&bytes)), Some(bytes));
        }
        assert_eq!(base64_decode("a*b"), None);
        assert_eq!(
            base64_decode("Zm8"),
            Some(b"fo".to_vec()),
            "padding is optional"
        );
        assert_eq!(account_key().len(), 64);
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }

    /// The signature as `openssl dgst -sha256 -mac HMAC -macopt hexkey:KEY -binary | base64`
    /// makes it of the string to sign (the account key, base64-decoded, as hex).
    #[test]
    fn sas_query_signature() {
        let q = sas_query("c", "b.gz", UNIX_EPOCH + Duration::from_secs(1_612_455_230));
        assert_eq!(
            q,
            "sv=2021-08-06&sr=b&sp=r&se=2021-02-04T16%3A13%3A50Z\
             &sig=9twgTzKy95YTkuLS66FZ%2FlB%2F0wkgf%2BNmEeeOLImy4ZU%3D"
        );
    }
}
