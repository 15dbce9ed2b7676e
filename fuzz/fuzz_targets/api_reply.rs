//! The API reply decoders — JSON bodies (`read_json`, lists and `@odata.nextLink`) and
//! the error decoder (`api_error`, `describe_body`) — through the real client against
//! an in-process loopback server that sends the fuzzer's bytes as the reply. Nothing
//! panics, a non-2xx reply is an error that keeps its status (a 400 on a result link
//! comes back as "not finished", with the refusal inside), and a 2xx one never is an
//! API error.
//!
//! Input: byte 0 picks the status, byte 1 the call, the rest is the body.

#![no_main]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mdlr::{ActionQuery, Client, Credential, Endpoints, Error, RetryPolicy, Timeouts};

const STATUSES: [u16; 14] = [
    200, 201, 204, 301, 302, 400, 401, 403, 404, 409, 429, 500, 502, 503,
];

/// The reply the server sends next.
static REPLY: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A client for a loopback server that answers every request with [`REPLY`].
fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                // The head, then the body it announces (POSTs have one).
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = stream.read_exact(&mut body);
                let reply = REPLY.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let _ = stream.write_all(&reply);
            }
        });
        Client::builder(Credential::token("fuzz-token"))
            .endpoints(Endpoints::default().with_api_base(&base))
            .retry_policy(RetryPolicy::with_retries(0))
            .timeouts(Timeouts::new(Duration::from_secs(5), Duration::from_secs(5)))
            .rate_limits(Vec::new())
            .start_limits(Vec::new())
            .json_limit(1 << 20)
            .build()
            .expect("the client builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let [status, call, body @ ..] = data else {
        return;
    };
    let status = STATUSES[usize::from(*status) % STATUSES.len()];
    let mut reply = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body);
    *REPLY.lock().unwrap_or_else(|e| e.into_inner()) = reply;

    let client = client();
    let id = "988cc94e-7a8f-4b28-ab65-54970c5d5018";
    let error = match call % 6 {
        0 => client.action(id).err(),
        1 => client.result_link(id, 0).err(),
        2 => client.list_actions(&ActionQuery::new()).err(),
        3 => client.library_files().err(),
        4 => client.cancel_action(id, "fuzz").err(),
        _ => client.find_machines(&["host1.contoso.com"]).err(),
    };
    // `find_machines` takes a 404 for "none found", as the service may say it.
    let none_found = status == 404 && call % 6 == 5;
    let Some(error) = error else {
        assert!(
            (200..300).contains(&status) || none_found,
            "{status} taken for a success"
        );
        return;
    };
    let _ = (
        error.to_string(),
        format!("{error:?}"),
        error.code(),
        error.correlation_id(),
    );
    if (200..300).contains(&status) {
        // A body that is not what it should be.
        assert!(
            matches!(error, Error::Malformed { .. } | Error::Config { .. }),
            "{status} gave {error:?}"
        );
    } else {
        // A 400 on a result link is explained as "not finished", the refusal inside.
        let explained = status == 400 && call % 6 == 1 && error.is_not_finished();
        assert!(
            (matches!(error, Error::Api { .. }) || explained) && error.status() == Some(status),
            "{status} gave {error:?}"
        );
    }
});
